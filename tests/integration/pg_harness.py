"""Starts and stops a PostgreSQL 15 server for integration tests: a fresh data dir in a
temporary directory, listening on 127.0.0.1 on a free port (and a Unix socket in the same
temporary directory), wal_level=logical for change capture. Run as root (PostgreSQL refuses
to), the server runs as the `postgres` user that Debian's package creates.

    with Postgres() as pg:       # started; pg.dsn is a libpq connection string
        pg.sql("CREATE TABLE t (id int primary key)")
        pg.restart()
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import time

from connect_harness import free_port

PG_BIN = os.environ.get("ORDO_PG_BIN", "/usr/lib/postgresql/15/bin")
START_TIMEOUT_S = 60



class Postgres:
    def __init__(self, dbname="app"):
        self.root = tempfile.mkdtemp(prefix="ordo-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.dbname = dbname
        self.user = None  # run as this OS user when we are root
        self.superuser = "ordo"
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.proc = None

    @property
    def dsn(self):
        return (f"host=127.0.0.1 port={self.port} dbname={self.dbname} "
                f"user={self.superuser}")

    def _run(self, args, **kw):
        return subprocess.run(args, user=self.user, check=True, capture_output=True, text=True,
                              **kw)

    def start(self):
        if not os.path.exists(self.data):
            self._run([f"{PG_BIN}/initdb", "-D", self.data, "-U", self.superuser,
                       "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        log = open(os.path.join(self.root, "postgres.log"), "ab")
        self.proc = subprocess.Popen(
            [f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             "-c", "wal_level=logical", "-c", "max_replication_slots=8",
             "-c", "max_wal_senders=8", "-c", "fsync=on"],
            user=self.user, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            r = subprocess.run([f"{PG_BIN}/pg_isready", "-h", "127.0.0.1", "-p", str(self.port)],
                               capture_output=True)
            if r.returncode == 0:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("postgres exited:\n" + self.log())
            time.sleep(0.1)
        else:
            raise RuntimeError("postgres did not start:\n" + self.log())
        r = subprocess.run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            self.superuser, "-d", "postgres", "-tAc",
                            f"SELECT 1 FROM pg_database WHERE datname = '{self.dbname}'"],
                           capture_output=True, text=True, check=True)
        if r.stdout.strip() != "1":
            self.sql(f"CREATE DATABASE {self.dbname}", db="postgres")
        return self

    def sql(self, statement, db=None):
        """Runs SQL with psql; returns the rows as lists of strings (tab-separated, unaligned)."""
        r = subprocess.run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            self.superuser, "-d", db or self.dbname, "-v", "ON_ERROR_STOP=1",
                            "-tA", "-F", "\t", "-c", statement],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {statement}: {r.stderr}")
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def stop(self, mode="fast"):
        if self.proc is None:
            return
        self._run([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "stop"])
        self.proc.wait(START_TIMEOUT_S)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(os.path.join(self.root, "postgres.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            try:
                self.stop("immediate")
            except Exception:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        return False
