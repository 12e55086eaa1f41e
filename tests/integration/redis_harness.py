"""Starts and stops a Redis server for integration tests: 127.0.0.1 on a free port, its data in
a temporary directory, every write appended and fsynced (appendonly yes, appendfsync always)
so that a restart keeps what was acknowledged.

    with RedisServer() as r:     # started; r.port; r.client(db=0) is a redis-py client
        r.restart()
"""

import os
import shutil
import subprocess
import tempfile
import time

import redis

from connect_harness import free_port

START_TIMEOUT_S = 30



class RedisServer:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="ordo-redis-")
        self.port = free_port()
        self.proc = None

    def start(self):
        log = open(os.path.join(self.root, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.root,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"],
            stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + self.log())
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start:\n" + self.log())

    def client(self, db=0):
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=30)

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()  # SIGTERM: redis-server flushes the AOF and exits
        self.proc.wait(START_TIMEOUT_S)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(os.path.join(self.root, "redis.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
        return False
