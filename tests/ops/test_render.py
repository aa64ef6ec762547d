"""flows.fleet.render, and the templates' own promises; the supervisord output is read by supervisord's
own config parser."""

from __future__ import annotations

import getpass
import re
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from flows.errors import ConfigError
from flows.fleet.render import (
    DEFAULT_ENV_FILE,
    DEFAULT_ETLCTL,
    ops_dir,
    render_supervisor,
    render_systemd,
)
from tests.ops.conftest import OPS


def test_templates_come_from_the_checkout() -> None:
    assert ops_dir() == OPS


def test_every_supervisord_variable_is_documented_in_the_banner() -> None:
    text = (OPS / "supervisord.conf").read_text(encoding="utf-8")
    banner = text[: text.index("\n[")]
    settings = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(";"))
    used = set(re.findall(r"%\(ENV_(\w+)\)s", settings))
    assert used == {"ETLCTL_WORKERS", "ETLCTL_HOME", "ETLCTL_BIN", "ETLCTL_ENV_FILE"}
    for name in used:
        assert re.search(rf"^;\s+{name}\s", banner, re.MULTILINE), f"{name} is not explained in the banner"


def test_rendered_supervisor_include_is_what_supervisord_reads(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "logs").mkdir(parents=True)
    include = tmp_path / "etlctl.conf"
    include.write_text(
        render_supervisor(
            2, "/opt/e/bin/etlctl", "/etc/e/e.env", str(home), user=getpass.getuser(), host="h1", pool="p-1"
        ),
        encoding="utf-8",
    )
    main = tmp_path / "supervisord.conf"
    main.write_text(f"[supervisord]\nlogfile = {home}/logs/s.log\n[include]\nfiles = {include}\n")
    options = ServerOptions()
    options.realize(args=["-c", str(main)])
    (group,) = options.process_group_configs
    programs = {p.name: p for p in group.process_configs}
    assert sorted(programs) == ["h1-01", "h1-02"]
    assert programs["h1-02"].command == (
        "/opt/e/bin/etlctl workers exec --name h1-02 --env-file /etc/e/e.env --pool p-1"
    )
    assert programs["h1-02"].stdout_logfile == f"{home}/logs/etl-worker-02.log"
    assert programs["h1-02"].environment == {"PREFECT_HOME": f"{home}/prefect-home"}
    assert (programs["h1-02"].stopwaitsecs, programs["h1-02"].killasgroup) == (660, True)


def test_rendered_systemd_units_carry_the_host_values() -> None:
    units = render_systemd(5, "/srv/etlctl/bin/etlctl", "etlsvc", "/etc/etl/host.env")
    assert sorted(units) == [
        "etl-orchestrator.service",
        "etl-orchestrator.timer",
        "etl-worker@.service",
        "etl-workers.target",
    ]
    wants = re.findall(r"^Wants=(\S+)$", units["etl-workers.target"], re.MULTILINE)
    assert wants == [f"etl-worker@{i}.service" for i in range(1, 6)]
    worker = units["etl-worker@.service"]
    assert "ExecStart=/srv/etlctl/bin/etlctl workers exec --index %i --env-file /etc/etl/host.env" in worker
    assert re.search(r"^User=etlsvc$", worker, re.MULTILINE)
    for text in units.values():
        assert DEFAULT_ETLCTL not in text and DEFAULT_ENV_FILE not in text
        assert not re.search(r"^User=etl$", text, re.MULTILINE)


@pytest.mark.parametrize(
    "args",
    [
        (0, "/opt/etlctl/bin/etlctl", "etl", "/etc/e.env"),
        (2, "etlctl", "etl", "/etc/e.env"),
        (2, "/opt/my etl/etlctl", "etl", "/etc/e.env"),
        (2, "/opt/etlctl/bin/etlctl", "etl", "/etc/100%.env"),
        (2, "/opt/etlctl/bin/etlctl", "Bad User", "/etc/e.env"),
    ],
)
def test_values_the_service_managers_would_misread_are_refused(args: tuple) -> None:
    with pytest.raises(ConfigError):
        render_systemd(*args)
