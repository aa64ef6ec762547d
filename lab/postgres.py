"""A throwaway PostgreSQL cluster in a folder: for tests/pg, bench/pg_load and `make fleet-demo`.

    cluster = start_cluster(Path("/tmp/pg"), free_port(), password)   # initdb + start, as postgres
    engine = create_engine(cluster.create_database("source"))
    cluster.stop()

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` system user.
Nothing is installed or registered system-wide: the cluster lives and dies in its folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from flows.errors import ConfigError

SUPERUSER = "etl"


@dataclass
class PgCluster:
    root: Path
    host: str
    port: int
    password: str

    def url(self, database: str, driver: str = "psycopg") -> URL:
        return URL.create(f"postgresql+{driver}", SUPERUSER, self.password, self.host, self.port, database)

    def create_database(self, name: str) -> URL:
        self._run(
            "createdb",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            SUPERUSER,
            name,
            env={"PGPASSWORD": self.password},
        )
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop", check=False)

    def _run(self, tool: str, *args: str, env: dict[str, str] | None = None, check: bool = True) -> None:
        _as_owner([str(bin_dir() / tool), *args], self.root, env, check)


def bin_dir() -> Path:
    """The newest installed server's binaries (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise ConfigError("no PostgreSQL server is installed (apt-get install postgresql)")
    return Path(initdb).parent


def start_cluster(
    root: Path, port: int, password: str, host: str = "127.0.0.1", durable: bool = False
) -> PgCluster:
    """initdb + start; `durable=False` turns fsync off, which a throwaway cluster does not need."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "sock").mkdir(exist_ok=True)
    pwfile = root / "pwfile"
    pwfile.touch(mode=0o600)  # the folder is world-searchable; the password file must not be readable
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for path in (root, root / "sock", pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    cluster = PgCluster(root, host, port, password)
    cluster._run(
        "initdb",
        "-D",
        str(root / "data"),
        "-U",
        SUPERUSER,
        "--auth-local=trust",
        "--auth-host=scram-sha-256",
        f"--pwfile={pwfile}",
        "-E",
        "UTF8",
        "--locale=C.UTF-8",
    )
    pwfile.unlink()
    options = f"-c listen_addresses={host} -p {port} -c unix_socket_directories={root / 'sock'}"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    cluster._run(
        "pg_ctl", "-D", str(root / "data"), "-o", options, "-l", str(root / "server.log"), "-w", "start"
    )
    return cluster


def _as_owner(command: list[str], cwd: Path, env: dict[str, str] | None, check: bool) -> None:
    tool = Path(command[0]).name
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(
            f"{tool} failed: {reason} (every folder above {cwd} must be searchable by postgres)"
        )
