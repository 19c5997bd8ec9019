"""A real PostgreSQL server for the tests: a new cluster in a temporary directory, from Debian's postgresql
package (`.ci/run` installs it when missing), on a free port, stopped and removed afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` account the package
creates, and its programs run as that account.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.ports import free_port


class NoPostgres(RuntimeError):
    """No PostgreSQL server programs on this machine."""


def bindir() -> Path:
    """The directory of initdb and pg_ctl: $PG_BINDIR, else the newest of /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise NoPostgres("the PostgreSQL tests need Debian's postgresql package (apt-get install postgresql) "
                         "or PG_BINDIR=/path/to/postgresql/bin")
    return Path(found[-1]).parent


@contextlib.contextmanager
def postgres_server(database: str = "netzausbau") -> Iterator[str]:
    """Start a cluster with one database; yield its URL (postgresql://user@127.0.0.1:port/database). The server
    runs without fsync (a test's data need not survive a crash)."""
    bin_ = bindir()
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    # as root in /tmp itself: the postgres account must reach the folder, and its socket path stays short
    home = Path(tempfile.mkdtemp(prefix="netzausbau-pg-", dir="/tmp" if as_root else None))
    data = home / "data"
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []

    def run(*args: str) -> None:
        done = subprocess.run([*prefix, *args], capture_output=True, text=True, cwd=home)
        if done.returncode:
            log = home / "server.log"
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout[-1500:]}{done.stderr[-1500:]}{tail}")

    try:
        if as_root:
            account = pwd.getpwnam("postgres")
            os.chown(home, account.pw_uid, account.pw_gid)
        port = free_port()
        run(str(bin_ / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
        try:
            run(str(bin_ / "pg_ctl"), "-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "60", "-o",
                f"-p {port} -k {home} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off", "start")
            run(str(bin_ / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, database)
            yield f"postgresql://{user}@127.0.0.1:{port}/{database}"
        finally:
            if (data / "postmaster.pid").exists():
                run(str(bin_ / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(home, ignore_errors=True)
