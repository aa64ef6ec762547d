"""`[workers]` limits: parsed with units, refused in one line naming key and value (also through
`etlctl config check`, exit 2), and rendered into the systemd worker unit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flows.config import load_config, worker_limits
from flows.errors import ConfigError
from flows.fleet.memory_watch import over_limit, run_label
from flows.fleet.render import render_systemd
from flows.limits import WorkerLimits, parse_limits, size_text

ETLCTL = str(Path(sys.executable).with_name("etlctl"))
UNIT = "etl-worker@.service"


def _config(tmp_path: Path, workers: str) -> Path:
    path = tmp_path / "etlctl.toml"
    path.write_text(
        '[source]\nurl = "sqlite:///s.db"\n[target]\nurl = "sqlite:///t.db"\n[tables]\nnames = ["t"]\n'
        f"[workers]\n{workers}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"memory_max": "512M"}, WorkerLimits(memory_max=512 * 1024**2)),
        ({"memory_max": "2G", "memory_high": "1536m"}, WorkerLimits(2 * 1024**3, 1536 * 1024**2)),
        ({"memory_max": 100_000_000}, WorkerLimits(memory_max=100_000_000)),
        ({"memory_max": "1T"}, WorkerLimits(memory_max=1024**4)),
        ({"cpu_quota": "150%"}, WorkerLimits(cpu_quota=150.0)),
        ({"cpu_quota": "12.5%", "nice": -5}, WorkerLimits(cpu_quota=12.5, nice=-5)),
        ({}, WorkerLimits()),
    ],
)
def test_limits_parse_with_units(raw, expected) -> None:
    assert parse_limits(raw) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('memory_max = "12X"', 'memory_max in [workers] must be a size such as "512M" or "2G"'),
        ('memory_max = "1M"', "not '1M'"),
        ("memory_max = true", "memory_max in [workers]"),
        ('memory_high = "-5G"', "memory_high in [workers] must be a size"),
        ('memory_max = "512M"\nmemory_high = "1G"', "memory_high in [workers] ('1G') must not exceed"),
        ('cpu_quota = "150"', 'cpu_quota in [workers] must be a share of one CPU such as "50%"'),
        ('cpu_quota = "0%"', "not '0%'"),
        ("cpu_quota = 1.5", "cpu_quota in [workers]"),
        ("nice = 20", "nice in [workers] must be a whole number from -20 to 19, not 20"),
        ('nice = "low"', "not 'low'"),
        ('memory = "1G"', "unknown key 'memory' in [workers]"),
    ],
)
def test_a_bad_limit_is_one_line_naming_key_and_value(tmp_path, line, message) -> None:
    path = _config(tmp_path, line)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    with pytest.raises(ConfigError):  # the worker reads the same section alike
        worker_limits(path)


def test_config_check_reports_a_bad_limit_and_exits_2(tmp_path) -> None:
    path = _config(tmp_path, 'memory_max = "lots"')
    proc = subprocess.run(
        [ETLCTL, "--config", str(path), "config", "check"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "memory_max in [workers]" in proc.stderr and "'lots'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_config_carries_the_limits_and_a_missing_file_means_none(tmp_path, monkeypatch) -> None:
    path = _config(tmp_path, 'memory_max = "768M"\nnice = 10')
    assert load_config(path).workers == WorkerLimits(memory_max=768 * 1024**2, nice=10)
    assert worker_limits(path) == load_config(path).workers
    assert worker_limits(tmp_path / "missing.toml") == WorkerLimits()
    monkeypatch.setenv("ETL_MEMORY", "640M")
    assert worker_limits(_config(tmp_path, 'memory_max = "${ETL_MEMORY}"')).memory_max == 640 * 1024**2


def _bare_etlctl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """etlctl in a bare environment: no config, API or passwords beyond what `args` name."""
    return subprocess.run(
        [ETLCTL, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=60,
    )


def _unit(limits: WorkerLimits | None) -> str:
    units = render_systemd(2, "/opt/etlctl/venv/bin/etlctl", "etl", "/etc/etlctl/etlctl.env", limits=limits)
    return units[UNIT]


def test_systemd_worker_unit_gets_the_limits_in_its_service_section() -> None:
    text = _unit(parse_limits({"memory_max": "2G", "memory_high": "1536M", "cpu_quota": "150%", "nice": 10}))
    service = text[text.index("[Service]") :]
    for line in ("MemoryMax=2432M", "MemoryHigh=1920M", "CPUQuota=150%", "Nice=10"):
        assert f"\n{line}\n" in service, line
    assert service.index("MemoryMax=") < service.index("# Hardening")


def test_systemd_worker_unit_without_limits_is_the_template_as_before() -> None:
    text = _unit(None)
    assert text == _unit(WorkerLimits())
    for key in ("MemoryMax=", "MemoryHigh=", "CPUQuota=", "Nice="):
        assert key not in text
    assert "Nice=0" in _unit(WorkerLimits(nice=0))


def test_sizes_render_in_the_largest_exact_unit() -> None:
    assert [size_text(n) for n in (512 * 1024**2, 2 * 1024**3, 1536 * 1024**2, 100_000_000)] == [
        "512M",
        "2G",
        "1536M",
        "100000000",
    ]


def test_the_failure_message_names_table_limit_and_rss() -> None:
    from types import SimpleNamespace

    run = SimpleNamespace(name="wide-run", parameters={"table": "wide", "batch_id": "b"})
    message = over_limit(run_label(run), 400 * 1024**2, 700 * 1024**2)
    assert message.startswith("table 'wide' stopped")
    assert "700 MiB" in message and "memory_max = 400M" in message
    run.parameters = {}
    assert run_label(run) == "flow run 'wide-run'"


def test_register_systemd_renders_the_configs_limits_into_the_worker_unit(tmp_path) -> None:
    path = _config(tmp_path, 'memory_max = "1G"\nmemory_high = "900M"\ncpu_quota = "50%"\nnice = 5')
    proc = _bare_etlctl(
        tmp_path, "--config", str(path), "machine", "register", "--host", "db-07", "--systemd", "--dry-run"
    )
    assert proc.returncode == 0, proc.stderr
    start = proc.stdout.index("etl-worker@.service")
    unit = proc.stdout[start : proc.stdout.index("# ---- ", start)]
    for line in ("MemoryMax=1408M", "MemoryHigh=1284M", "CPUQuota=50%", "Nice=5"):
        assert f"\n{line}\n" in unit, line


def test_workers_exec_refuses_a_bad_limit_in_one_line_before_becoming_the_worker(tmp_path) -> None:
    """What supervisord and systemd run: the env file names the config; nothing is exec'd."""
    env_file = tmp_path / "etlctl.env"
    config = _config(tmp_path, "nice = 42")
    env_file.write_text(f"PREFECT_API_URL=http://127.0.0.1:9/api\nETLCTL_CONFIG={config}\n")
    proc = _bare_etlctl(tmp_path, "workers", "exec", "--env-file", str(env_file))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "etlctl: error: nice in [workers] must be a whole number from -20 to 19, not 42"
    ]
