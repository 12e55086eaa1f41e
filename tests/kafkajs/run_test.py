#!/usr/bin/python3
"""The KafkaJS test as ctest runs it.

1. Copies package.json, package-lock.json, test.js and group_member.js into --work-dir and runs
   `npm ci --no-audit --no-fund` there when node_modules is missing or the lock file changed.
2. Starts an ordo broker (tests/integration/ordo_harness.py; ORDO_BIN names the binary).
3. Runs `node test.js` with ORDO_BOOTSTRAP set; it writes every record it produced to a JSON file.
4. Reads each partition back with kcat and compares offsets, keys, values, headers and
   timestamps with that file.
5. Stops the broker with SIGTERM, which must exit 0.

    ORDO_BIN=build/src/cli/ordo tests/kafkajs/run_test.py --work-dir /tmp/kafkajs-work
"""

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from ordo_harness import Broker  # noqa: E402

NODE_TIMEOUT_S = 180
NPM_TIMEOUT_S = 300
KCAT_TIMEOUT_S = 30


class Failure(Exception):
    pass


def prepare(work_dir):
    """The node project in work_dir, with its node_modules installed by `npm ci`."""
    os.makedirs(work_dir, exist_ok=True)
    for name in ("package.json", "package-lock.json", "test.js", "group_member.js"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(work_dir, name))
    with open(os.path.join(HERE, "package-lock.json"), "rb") as f:
        lock_hash = hashlib.sha256(f.read()).hexdigest()
    stamp = os.path.join(work_dir, "node_modules", ".ordo-lock-sha256")
    try:
        with open(stamp) as f:
            if f.read().strip() == lock_hash:
                return
    except FileNotFoundError:
        pass
    npm = shutil.which("npm")
    if npm is None:
        raise Failure("npm is not installed (Node.js with npm is needed for the KafkaJS test)")
    print(f"npm ci in {work_dir}", flush=True)
    t0 = time.monotonic()
    subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=work_dir,
        check=True,
        timeout=NPM_TIMEOUT_S,
    )
    with open(stamp, "w") as f:
        f.write(lock_hash + "\n")
    print(f"npm ci took {time.monotonic() - t0:.1f} s", flush=True)


def kcat_read(bootstrap, topic, partition):
    args = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-p", str(partition),
            "-o", "beginning", "-e", "-q", "-J"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=KCAT_TIMEOUT_S)
    if r.returncode != 0:
        raise Failure(f"kcat {topic}/{partition} exited {r.returncode}: {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def headers_pairs(kcat_headers):
    hs = kcat_headers or []
    return [[hs[i], hs[i + 1]] for i in range(0, len(hs), 2)]


def check_partition(bootstrap, topic, partition, want):
    got = kcat_read(bootstrap, topic, partition)
    if len(got) != len(want):
        raise Failure(f"{topic}/{partition}: kcat read {len(got)} records, KafkaJS produced {len(want)}")
    for g, w in zip(got, want):
        where = f"{topic}/{partition} offset {w['offset']}"
        checks = [
            ("offset", g["offset"], w["offset"]),
            ("partition", g["partition"], int(partition)),
            ("key", g.get("key"), w["key"]),
            ("value", g.get("payload"), w["value"]),
            ("headers", headers_pairs(g.get("headers")), [[k, v] for k, v in w["headers"].items()]),
            ("timestamp type", g["tstype"], "create"),
            ("timestamp", g["ts"], int(w["timestamp"])),
        ]
        for what, a, b in checks:
            if a != b:
                raise Failure(f"{where}: {what}: kcat read {a!r}, KafkaJS produced {b!r}")


def check_with_kcat(bootstrap, expect_file):
    with open(expect_file) as f:
        expect = json.load(f)
    passed = 0
    for topic, parts in sorted(expect.items()):
        for partition, want in sorted(parts.items(), key=lambda kv: int(kv[0])):
            check_partition(bootstrap, topic, partition, want)
            print(f"ok   kcat {topic}/{partition}: {len(want)} records match", flush=True)
            passed += 1
    # The LogAppendTime topic: the broker's clock, not the producer's timestamps (1000, 2000).
    got = kcat_read(bootstrap, "kjs-logappend", 0)
    if [g["payload"] for g in got] != ["1", "2"]:
        raise Failure(f"kjs-logappend/0: kcat read {got}")
    for g in got:
        if g["tstype"] != "logappend" or abs(g["ts"] - time.time() * 1000) > 600_000:
            raise Failure(f"kjs-logappend/0: want a LogAppendTime timestamp of now, got {g}")
    print("ok   kcat kjs-logappend/0: LogAppendTime timestamps", flush=True)
    return passed + 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--work-dir", required=True, help="where the node project is installed and run")
    args = ap.parse_args()
    work_dir = os.path.abspath(args.work_dir)

    t0 = time.monotonic()
    passed = failed = 0
    prepare(work_dir)
    node = shutil.which("node")
    if node is None or shutil.which("kcat") is None:
        raise Failure("node and kcat must be installed")

    broker = Broker()
    broker.start()
    stopped = False
    try:
        expect_file = os.path.join(broker.root, "kafkajs-records.json")
        env = dict(os.environ, ORDO_BOOTSTRAP=broker.bootstrap, ORDO_EXPECT_FILE=expect_file,
                   KAFKAJS_NO_PARTITIONER_WARNING="1")
        print(f"broker on {broker.bootstrap}; node test.js", flush=True)
        r = subprocess.run([node, "test.js"], cwd=work_dir, env=env, timeout=NODE_TIMEOUT_S)
        if r.returncode != 0:
            raise Failure(f"node test.js exited {r.returncode}")
        passed += 1
        passed += check_with_kcat(broker.bootstrap, expect_file)
        code = broker.stop()
        stopped = True
        if code != 0:
            raise Failure(f"broker exited {code} on SIGTERM")
        print("ok   broker stopped cleanly on SIGTERM", flush=True)
        passed += 1
    except (Failure, subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
        failed += 1
        print(f"FAIL {e}", flush=True)
        print("---- broker log ----\n" + broker.log(), flush=True)
    finally:
        if not stopped:
            broker.stop()
        shutil.rmtree(broker.root, ignore_errors=True)
    print(f"({time.monotonic() - t0:.1f} s)")
    print(f"kafkajs-kcat: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"FAIL {e}")
        print("kafkajs-kcat: 0 passed, 1 failed")
        sys.exit(1)
