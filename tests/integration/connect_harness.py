"""Starts and stops an `ordo connect run` worker for integration tests: its pipeline file and
data dir live in a directory the caller gives; HTTP on a port the kernel picks, read from the
"http on" log line.

    c = Connect(root, pipeline_text)   # pipeline_text: the file, without [worker] http/data_dir
    c.start(); c.get("/status"); c.kill(); c.start(); c.stop()
"""

import atexit
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

from ordo_harness import ORDO_BIN

WAIT_S = 60


def free_port():
    """A port free on 127.0.0.1 now (for servers that must keep theirs across restarts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_toml(name, dsn, tables, heartbeat_ms=200, partitions=1):
    """A [[source]] of type postgres capturing `tables` (["public.t", ...])."""
    listed = ", ".join(f'"{t}"' for t in tables)
    return (f'[[source]]\nname = "{name}"\ntype = "postgres"\nconninfo = "{dsn}"\n'
            f'tables = [{listed}]\nheartbeat_ms = {heartbeat_ms}\npartitions = {partitions}\n\n')


def kill_rounds(worker, run, rounds, rng, after_kill=None, after_start=None):
    """`rounds` times: `run(n, stop_event)` writes in a thread; after a random moment the
    worker is SIGKILLed (then after_kill(i)), started again (then after_start(i)), and the
    writer stops a random moment later."""
    for i in range(rounds):
        stop = threading.Event()
        t = threading.Thread(target=run, args=(10**9, stop))
        t.start()
        time.sleep(rng.uniform(0.1, 0.8))
        worker.kill()
        if after_kill:
            after_kill(i)
        worker.start()
        if after_start:
            after_start(i)
        time.sleep(rng.uniform(0.1, 0.5))
        stop.set()
        t.join()


class Connect:
    """An `ordo connect run` process with its pipeline file and data dir."""

    def __init__(self, root, worker, rest):
        """worker: lines for [worker] (bootstrap, group, id); rest: the sinks and sources."""
        self.root = root
        self.pipeline = os.path.join(root, "pipeline.toml")
        with open(self.pipeline, "w") as f:
            f.write(f'[worker]\ndata_dir = "{os.path.join(root, "data")}"\n'
                    f'http = "127.0.0.1:0"\n{worker}\n\n{rest}')
        self.proc = None
        self.port = None
        self.starts = 0
        # A test that fails half-way must not leave its worker running.
        atexit.register(self._kill_if_running)

    def _kill_if_running(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def start(self):
        self.starts += 1
        self.log_path = os.path.join(self.root, f"connect-{self.starts}.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([ORDO_BIN, "connect", "run", self.pipeline],
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            text = open(self.log_path, errors="replace").read()
            m = re.search(r"connect: http on http://127\.0\.0\.1:(\d+)", text)
            if m and "connect: running" in text:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"connect exited with {self.proc.returncode}:\n{text}")
            time.sleep(0.02)
        raise RuntimeError("connect did not start:\n" + open(self.log_path).read())

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(WAIT_S * 2)
        self.proc = None
        return code

    def log(self):
        return open(self.log_path, errors="replace").read()

    def get(self, path, method="GET"):
        """(status, JSON body) of GET path."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        try:
            with urllib.request.urlopen(req, timeout=2 * WAIT_S) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def post(self, path):
        return self.get(path, method="POST")

    def scan(self, view):
        """{key: value} of every key of a table view, page by page (the `next` cursor)."""
        out, after = {}, None
        while True:
            path = f"/views/{view}/scan?limit=10000"
            if after is not None:
                path += f"&after={after}"  # percent-encoded by the worker already
            status, page = self.get(path)
            assert status == 200, page
            out.update((r["key"], r["value"]) for r in page["rows"])
            after = page["next"]
            if after is None:
                return out
