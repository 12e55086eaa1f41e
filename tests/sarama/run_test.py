#!/usr/bin/python3
"""The Sarama test as ctest runs it.

1. Builds main.go with Debian's Go and Sarama in GOPATH mode (GO111MODULE=off,
   GOPATH=/usr/share/gocode, no network) into --work-dir, with the build cache there.
2. Starts an ordo broker (tests/integration/ordo_harness.py; ORDO_BIN names the binary).
3. Runs the test program with ORDO_BOOTSTRAP set.
4. Stops the broker with SIGTERM, which must exit 0.

    ORDO_BIN=build/src/cli/ordo tests/sarama/run_test.py --work-dir /tmp/sarama-work
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from ordo_harness import Broker  # noqa: E402

DEBIAN_GOPATH = "/usr/share/gocode"
BUILD_TIMEOUT_S = 240
RUN_TIMEOUT_S = 90


def build(work_dir):
    go = shutil.which("go")
    if go is None:
        sys.exit("go is not installed (Debian packages golang-go and golang-github-shopify-sarama-dev)")
    if not os.path.isdir(os.path.join(DEBIAN_GOPATH, "src", "github.com", "Shopify", "sarama")):
        sys.exit(f"Sarama is not in {DEBIAN_GOPATH} (Debian package golang-github-shopify-sarama-dev)")
    os.makedirs(work_dir, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GO")}
    env.update(
        GO111MODULE="off",
        GOPATH=f"{os.path.join(work_dir, 'gopath')}:{DEBIAN_GOPATH}",
        GOCACHE=os.path.join(work_dir, "gocache"),
        GOFLAGS="",
        GOPROXY="off",
        GOTOOLCHAIN="local",
        CGO_ENABLED="0",  # pure Go; Sarama's zstd (cgo) is not used
    )
    exe = os.path.join(work_dir, "sarama_test")
    t0 = time.monotonic()
    subprocess.run([go, "build", "-o", exe, os.path.join(HERE, "main.go")], cwd=work_dir, env=env,
                   check=True, timeout=BUILD_TIMEOUT_S)
    print(f"go build took {time.monotonic() - t0:.1f} s", flush=True)
    return exe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work-dir", required=True, help="where the program and Go's cache go")
    args = ap.parse_args()
    t0 = time.monotonic()
    exe = build(os.path.abspath(args.work_dir))

    ok = True
    broker = Broker()
    broker.start()
    try:
        print(f"broker on {broker.bootstrap}", flush=True)
        env = dict(os.environ, ORDO_BOOTSTRAP=broker.bootstrap)
        try:
            r = subprocess.run([exe], env=env, timeout=RUN_TIMEOUT_S)
            ok = r.returncode == 0
            if not ok:
                print(f"FAIL sarama_test exited {r.returncode}", flush=True)
        except subprocess.TimeoutExpired:
            ok = False
            print(f"FAIL sarama_test did not finish within {RUN_TIMEOUT_S} s", flush=True)
    finally:
        code = broker.stop()
        if code != 0:
            ok = False
            print(f"FAIL broker exited {code} on SIGTERM", flush=True)
        else:
            print("ok   broker stopped cleanly on SIGTERM", flush=True)
        if not ok:
            print("---- broker log ----\n" + broker.log(), flush=True)
        shutil.rmtree(broker.root, ignore_errors=True)
    print(f"({time.monotonic() - t0:.1f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
