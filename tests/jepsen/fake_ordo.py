#!/usr/bin/env python3
"""A stand-in for `ordo serve` in cluster mode, for testing cluster_harness.py without the
broker: it parses the cluster command line, writes node.meta on its first start (as the broker
does), appends its arguments to <data-dir>/starts.jsonl, listens on the Kafka port (accepts and
closes) and answers GET /v1/cluster on the admin port with a fixed view (node 1 leads the
controller and partition t/0). SIGTERM: exit 0."""

import argparse
import http.server
import json
import os
import signal
import socket
import sys
import threading


def hostport(s):
    h, p = s.rsplit(":", 1)
    return h, int(p)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--admin-listen", required=True)
    ap.add_argument("--node-id", type=int, required=True)
    ap.add_argument("--cluster-listen", required=True)
    ap.add_argument("--cluster", required=True)
    ap.add_argument("--bootstrap", action="store_true")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    assert a.cmd == "serve"
    os.makedirs(a.data_dir, exist_ok=True)
    meta = os.path.join(a.data_dir, "node.meta")
    if not os.path.exists(meta):
        if not a.bootstrap:
            print("fake_ordo: empty data dir without --bootstrap (joins as a new node)",
                  file=sys.stderr)
        with open(meta, "w") as f:
            json.dump({"node_id": a.node_id}, f)
    with open(os.path.join(a.data_dir, "starts.jsonl"), "a") as f:
        f.write(json.dumps(sys.argv[1:]) + "\n")

    view = {"node_id": a.node_id, "cluster_id": "fake",
            "controller": {"leader": 1, "term": 3},
            "brokers": [{"id": int(v.split("@")[0]), "host": "h", "port": 0, "rack": None,
                         "fenced": False} for v in a.cluster.split(",")],
            "partitions": [{"topic": "t", "partition": 0, "leader": 1, "epoch": 3,
                            "replicas": [1, 2, 3], "isr": [1, 2, 3]}]}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(view).encode() if self.path == "/v1/cluster" else b"{}"
            self.send_response(200 if self.path == "/v1/cluster" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    admin = http.server.ThreadingHTTPServer(hostport(a.admin_listen), Handler)
    threading.Thread(target=admin.serve_forever, daemon=True).start()
    kafka = socket.socket()
    kafka.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    kafka.bind(hostport(a.listen))
    kafka.listen(16)
    print(f"listening on {a.listen}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    # A SIGTERM that the kernel hands to the HTTP thread does not interrupt accept() in this
    # one, where Python runs the handler: wake up now and then (test_lifecycle's SIGCONT then
    # SIGTERM once waited 60 s).
    kafka.settimeout(0.2)
    while True:
        try:
            c, _ = kafka.accept()
            c.close()
        except socket.timeout:
            pass


if __name__ == "__main__":
    main()
