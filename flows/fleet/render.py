"""A host's service files, rendered from the templates in `ops/`.

    render_systemd(3, "/opt/etlctl/venv/bin/etlctl", "etl", "/etc/etlctl/etlctl.env")

The templates are complete, working files that use the install defaults literally, so an operator
can read and copy them as they are; rendering substitutes this host's values for those literals (and
supervisord's %(ENV_...)s variables). Pure text in, text out: `etlctl machine register` (flows.fleet
.install) writes the result where the service manager reads it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from flows.errors import ConfigError
from flows.limits import WorkerLimits, percent_text, size_text

DEFAULT_ETLCTL = "/opt/etlctl/venv/bin/etlctl"
DEFAULT_USER = "etl"
DEFAULT_ENV_FILE = "/etc/etlctl/etlctl.env"
DEFAULT_HOME = "/var/lib/etlctl"  # a host's logs and worker state
SYSTEMD_UNITS = ("etl-worker@.service", "etl-orchestrator.service", "etl-orchestrator.timer")
SERVER_UNIT = "prefect-server.service"  # only on the host that runs the Prefect server (--server)
TARGET = "etl-workers.target"
PROGRAM = "[program:etl-worker]"
_NAMES = {
    "user": re.compile(r"[a-z_][a-z0-9_-]*"),
    "host": re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*"),
    "pool": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*"),
}
HARDENING = "\n# Hardening"  # the worker unit's limits go just above this block
_WANTS = re.compile(r"^(?:Wants=etl-worker@\d+\.service\n)+", re.MULTILINE)


def ops_dir() -> Path:
    """The templates: `ops/` beside cli.py in a checkout or editable install, else the copy that
    `pip install` puts in <prefix>/share/etlctl/ops (setup.cfg's data_files).

    The checkout's directory must hold supervisord.conf: an unrelated package may install a
    top-level `ops` next to cli.py in site-packages.
    """
    spec = importlib.util.find_spec("cli")
    if spec is not None and spec.origin:
        beside = Path(spec.origin).resolve().parent / "ops"
        if (beside / "supervisord.conf").is_file():
            return beside
    installed = Path(sys.prefix) / "share" / "etlctl" / "ops"
    if (installed / "supervisord.conf").is_file():
        return installed
    raise ConfigError(f"etlctl's ops templates are missing from {installed}; reinstall etlctl")


def render_supervisor(
    workers: int,
    etlctl: str,
    env_file: str,
    home: str,
    user: str | None = DEFAULT_USER,
    host: str | None = None,
    pool: str | None = None,
) -> str:
    """An include file for the host's own supervisord: ops/supervisord.conf's [program:etl-worker].

    `user`: the system supervisord runs as root and must drop to an unprivileged user (None keeps
    supervisord's own). `host`: the worker-name prefix; None keeps supervisord's %(host_node_name)s
    (uname -n, which may be a fully qualified name). `pool`: written into the worker command, so the
    workers poll the pool the inventory records; None leaves it to the env file's $ETLCTL_POOL.
    """
    _check_count(workers)
    for what, value in (("etlctl", etlctl), ("env file", env_file), ("home", home)):
        _check_path(what, value)
    text = (ops_dir() / "supervisord.conf").read_text(encoding="utf-8")
    start = text.index(PROGRAM)
    end = text.find("\n[", start)
    section = text[start:] if end < 0 else text[start : end + 1]
    values = {
        "%(ENV_ETLCTL_WORKERS)s": str(workers),
        "%(ENV_ETLCTL_BIN)s": etlctl,
        "%(ENV_ETLCTL_ENV_FILE)s": env_file,
        "%(ENV_ETLCTL_HOME)s": home,
    }
    if host is not None:
        _check_name("host", host)
        values["%(host_node_name)s"] = host
    for variable, value in values.items():
        section = section.replace(variable, value)
    section = _with_pool(section, r"^command = .*", pool)
    if user is not None:
        _check_name("user", user)
        section = re.sub(
            r"^(environment = .*\n)",
            lambda m: (
                f"{m.group(1)}; the system supervisord runs as root; the workers must not\nuser = {user}\n"
            ),
            section,
            count=1,
            flags=re.MULTILINE,
        )
    banner = (
        "; etlctl.conf -- this host's etlctl table workers, for /etc/supervisor/conf.d.\n"
        "; Rendered from etlctl's ops/supervisord.conf (see its comments); edit that, not this.\n"
        f"; {home}/logs must exist, and {home} be writable by the workers' user.\n"
        "; `supervisorctl reread && supervisorctl update` applies changes.\n\n"
    )
    return banner + section


def render_systemd(
    workers: int,
    etlctl: str,
    user: str,
    env_file: str,
    pool: str | None = None,
    server: bool = False,
    limits: WorkerLimits | None = None,
) -> dict[str, str]:
    """Unit file name -> text: the worker template, the host's target with one Wants= per worker,
    and the orchestrator's service and timer (and, with `server`, prefect-server.service), with
    this host's binary, user and env file; `pool` as for render_supervisor; `limits` ([workers])
    as the worker unit's MemoryMax=, MemoryHigh=, CPUQuota= and Nice=."""
    _check_count(workers)
    _check_path("etlctl", etlctl)
    _check_path("env file", env_file)
    _check_name("user", user)
    directory = ops_dir() / "systemd"
    units = {}
    for name in (*SYSTEMD_UNITS, TARGET, *([SERVER_UNIT] if server else [])):
        text = (directory / name).read_text(encoding="utf-8")
        text = text.replace(DEFAULT_ETLCTL, etlctl).replace(DEFAULT_ENV_FILE, env_file)
        text = re.sub(rf"^User={DEFAULT_USER}$", f"User={user}", text, flags=re.MULTILINE)
        if name == "etl-worker@.service":
            text = _with_pool(text, r"^ExecStart=.*", pool)
            text = text.replace(HARDENING, systemd_limits(limits or WorkerLimits()) + HARDENING, 1)
        if name == TARGET:
            wants = "".join(f"Wants=etl-worker@{i}.service\n" for i in range(1, workers + 1))
            text = _WANTS.sub(wants, text, count=1)
        units[name] = f"# Rendered by etlctl from ops/systemd/{name}; edit that, not this.\n" + text
    return units


UNIT_HEADROOM = 384 * 1024**2  # worker (~120 MiB) and fork server (~110 MiB) beside the run, measured


def systemd_limits(limits: WorkerLimits) -> str:
    """The [workers] limits as worker-unit lines. The memory ones bound the unit's whole cgroup
    (the worker, its fork server and its table run), so they get UNIT_HEADROOM on top: the worker's
    own per-run check stops a growing run first (Failed, named), and the kernel's cap stays the
    backstop for a run that outgrows the check."""
    lines = [
        f"{key}={value}"
        for key, value in (
            ("MemoryMax", limits.memory_max and size_text(limits.memory_max + UNIT_HEADROOM)),
            ("MemoryHigh", limits.memory_high and size_text(limits.memory_high + UNIT_HEADROOM)),
            ("CPUQuota", limits.cpu_quota and percent_text(limits.cpu_quota)),
            ("Nice", limits.nice),
        )
        if value is not None
    ]
    if not lines:
        return ""
    head = "# [workers] limits of the config (memory: the run's limit + 384M for worker and fork server)\n"
    return "\n" + head + "\n".join(lines) + "\n"


def _with_pool(text: str, line: str, pool: str | None) -> str:
    """`--pool POOL` appended to the one command line that `line` matches."""
    if pool is None:
        return text
    _check_name("pool", pool)
    return re.sub(line, lambda m: f"{m.group(0)} --pool {pool}", text, count=1, flags=re.MULTILINE)


def _check_count(workers: int) -> None:
    if workers < 1:
        raise ConfigError(f"a host needs at least one worker, not {workers}")


def _check_path(what: str, value: str) -> None:
    """Both managers split command lines on whitespace, and give '%' a meaning of their own."""
    if not value.startswith("/") or re.search(r"[\s%\"'\\]", value):
        raise ConfigError(
            f"the {what} path {value!r} must be absolute, without spaces, quotes or '%'; "
            "install or link it somewhere plainer"
        )


def _check_name(what: str, value: str) -> None:
    if not _NAMES[what].fullmatch(value):
        raise ConfigError(f"{value!r} is not a usable {what} name (letters, digits, '-', '_')")
