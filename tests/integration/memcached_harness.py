"""Starts and stops a memcached for integration tests: 127.0.0.1 on a free port, 64 MiB, no
UDP. (As root it runs as `nobody`: memcached refuses to run as root.)

    with Memcached() as m:       # started; m.port; m.client() is a pymemcache client
        m.restart()              # an empty cache again
"""

import os
import subprocess
import time

from pymemcache.client.base import Client

from connect_harness import free_port

START_TIMEOUT_S = 30



class Memcached:
    def __init__(self):
        self.port = free_port()
        self.proc = None

    def start(self):
        args = ["memcached", "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self.client().version()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("memcached exited")
                time.sleep(0.05)
        raise RuntimeError("memcached did not start")

    def client(self):
        return Client(("127.0.0.1", self.port), connect_timeout=5, timeout=30)

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(START_TIMEOUT_S)
            self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False
