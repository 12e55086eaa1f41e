"""Starts and stops an `ordo serve` broker for integration tests.

Every broker listens on 127.0.0.1 on a port the kernel picks (--listen 127.0.0.1:0) and keeps
its data in a temporary directory; the port is read from the "listening on" log line.

    with Broker() as b:          # started; b.bootstrap is "127.0.0.1:<port>"
        ...
        b.restart()              # SIGTERM, wait for exit 0, start again on the same data dir
                                 # (Broker(port=N) listens on N each time; else a new port)
        b.kill()                 # SIGKILL
        b.start()
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

ORDO_BIN = os.environ.get("ORDO_BIN", "ordo")
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 60


class Broker:
    def __init__(self, extra_args=(), data_dir=None, env=None, port=0, preexec_fn=None):
        self.extra_args = list(extra_args)
        self.preexec_fn = preexec_fn  # run in the child before exec (e.g. to set rlimits)
        self._own_dir = data_dir is None
        self.root = tempfile.mkdtemp(prefix="ordo-it-")
        self.data_dir = data_dir or os.path.join(self.root, "data")
        self.env = dict(os.environ, **(env or {}))
        # ORDO_BIN is this harness's knob, not a broker setting; the broker rejects unknown
        # ORDO_* variables, so it is not passed on.
        self.env.pop("ORDO_BIN", None)
        self.proc = None
        self.listen_port = port  # 0: the kernel picks one at each start
        self.port = None
        self.admin_port = None
        self.log_path = None
        self.starts = 0

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        assert self.proc is None, "already running"
        self.starts += 1
        self.log_path = os.path.join(self.root, f"broker-{self.starts}.log")
        log = open(self.log_path, "wb")
        args = [ORDO_BIN, "serve", "--data-dir", self.data_dir, "--listen",
                f"127.0.0.1:{self.listen_port}",
                "--admin-listen", "127.0.0.1:0"]
        self.proc = subprocess.Popen(args + self.extra_args, stdout=log, stderr=log, env=self.env,
                                     preexec_fn=self.preexec_fn)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            log = self.log()
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", log)
            if m:
                self.port = int(m.group(1))
                a = re.search(r"admin API on http://127\.0\.0\.1:(\d+)", log)
                self.admin_port = int(a.group(1)) if a else None
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.02)
        raise RuntimeError(f"broker did not start within {START_TIMEOUT_S}s:\n{self.log()}")

    def log(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def stop(self):
        """SIGTERM; returns the exit code (0 is a clean stop)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"broker ignored SIGTERM for {STOP_TIMEOUT_S}s:\n{self.log()}")
        self.proc = None
        return code

    def kill(self):
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def restart(self):
        code = self.stop()
        if code != 0:
            raise RuntimeError(f"broker exited with {code} on SIGTERM:\n{self.log()}")
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            code = self.stop()
            if exc[0] is None and code != 0:
                raise RuntimeError(f"broker exited with {code} on SIGTERM:\n{self.log()}")
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)
        return False
