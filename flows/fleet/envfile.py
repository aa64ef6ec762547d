"""Env files: KEY=VALUE lines read the way systemd's EnvironmentFile reads them.

    os.environ.update(read_env_file(Path("/etc/etlctl/etlctl.env")))

supervisord has no env-file option and cron starts with a bare environment, so `etlctl workers exec`
and `etlctl run --env-file` read the same file the systemd units name, with this one reader.
"""

from __future__ import annotations

import re
from pathlib import Path

from flows.errors import ConfigError

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile reads them: # comments, optional quotes."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read env file {path}: {exc.strerror}") from None
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE")
        key, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values
