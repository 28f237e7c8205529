"""A throwaway PostgreSQL server for tests: ``initdb`` in a temp folder, ``pg_ctl start`` on loopback.

::

    with postgres_server(tmp_path) as url:          # "postgresql://revseg@127.0.0.1:PORT/postgres"
        agent = ReVSegAgent(policy, tracker, checkpointer=url)

Needs the server binaries (Debian: ``apt-get install postgresql``; they live in
``/usr/lib/postgresql/<version>/bin``, or set ``$REVSEG_PG_BIN``). ``initdb`` refuses to run as
root, so as root the cluster is made and run as the ``postgres`` user (``runuser``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

from revseg.errors import InputError

PACKAGE = "postgresql"  # the Debian package holding initdb and pg_ctl


def find_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None when the server is not installed."""
    candidates = [os.environ.get("REVSEG_PG_BIN", "")]
    candidates += sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    which = shutil.which("pg_ctl")
    candidates.append(str(Path(which).parent) if which else "")
    for folder in filter(None, candidates):
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres_server(folder: str | Path, user: str = "revseg") -> Iterator[str]:
    """Start a fresh cluster under ``folder`` on a free loopback port; yield its URL; stop it afterwards."""
    bin_dir = find_bin()
    if bin_dir is None:
        raise InputError(f"no PostgreSQL server binaries (initdb, pg_ctl): apt-get install {PACKAGE}")
    root = Path(folder) / "pgdata"
    root.parent.mkdir(parents=True, exist_ok=True)
    prefix: list[str] = []
    if os.geteuid() == 0:  # initdb will not run as root: hand the folder to the postgres user
        owner = pwd.getpwnam("postgres")
        os.chown(root.parent, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise InputError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    run(str(bin_dir / "initdb"), "-D", str(root), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(root), "-o", options, "-l", str(root / "server.log"), "-w", "start")
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(root), "-m", "immediate", "-w", "stop")
