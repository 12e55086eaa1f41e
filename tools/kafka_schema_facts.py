#!/usr/bin/python3
"""Writes a facts-only copy of Kafka's message schemas into src/protocol/schema/.

    tools/kafka_schema_facts.py ../shared/kafka-protocol/messages src/protocol/schema

Kafka's message definitions are JSON with // comment lines, "about" prose and a license
header. The copy keeps only the wire facts that tools/gen_protocol.py needs (API key, versions,
field names, types, tags, defaults, ...): every comment and every "about" string is dropped.
Keys are written in a fixed order, one field per line, so a refresh produces a small diff.
Standard library only.
"""

import json
import os
import re
import sys

TOP_KEYS = ["apiKey", "type", "name", "validVersions", "deprecatedVersions", "flexibleVersions",
            "latestVersionUnstable", "fields", "commonStructs"]
FIELD_KEYS = ["name", "type", "versions", "nullableVersions", "taggedVersions", "tag",
              "flexibleVersions", "default", "mapKey", "ignorable", "entityType", "fields"]
STRUCT_KEYS = ["name", "versions", "fields"]
EXTRA = {"RequestHeader", "ResponseHeader", "ConsumerProtocolSubscription",
         "ConsumerProtocolAssignment"}


def wanted(name):
    return (name.endswith("Request") or name.endswith("Response") or name in EXTRA)


def strip_comments(text):
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def clean_field(f):
    out = {}
    for k in FIELD_KEYS:
        if k not in f:
            continue
        out[k] = [clean_field(x) for x in f[k]] if k == "fields" else f[k]
    return out


def clean(d):
    out = {}
    for k in TOP_KEYS:
        if k not in d:
            continue
        if k == "fields":
            out[k] = [clean_field(x) for x in d[k]]
        elif k == "commonStructs":
            out[k] = [{kk: ([clean_field(x) for x in s[kk]] if kk == "fields" else s[kk])
                       for kk in STRUCT_KEYS if kk in s} for s in d[k]]
        else:
            out[k] = d[k]
    return out


def dump(obj, indent=0):
    """JSON with one field object per line, nested fields indented."""
    pad = "  " * indent
    if isinstance(obj, dict) and "fields" in obj:
        head = {k: v for k, v in obj.items() if k != "fields" and k != "commonStructs"}
        parts = [json.dumps(head, separators=(",", ":"))[1:-1]]
        for key in ("fields", "commonStructs"):
            if key in obj:
                items = [pad + "  " + dump(x, indent + 1) for x in obj[key]]
                parts.append('"%s":[\n%s]' % (key, ",\n".join(items)))
        return "{" + ",".join(p for p in parts if p) + "}"
    return json.dumps(obj, separators=(",", ":"))


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: kafka_schema_facts.py KAFKA_MESSAGES_DIR OUT_DIR\n")
        return 2
    src, dst = argv[1], argv[2]
    os.makedirs(dst, exist_ok=True)
    written = set()
    for fn in sorted(os.listdir(src)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(src, fn), encoding="utf-8") as f:
            d = json.loads(strip_comments(f.read()))
        if not wanted(d["name"]):
            continue
        facts = clean(d)
        out = dump(facts) + "\n"
        # Guard: no prose may survive.
        assert '"about"' not in out and "//" not in out, fn
        name = d["name"] + ".json"
        with open(os.path.join(dst, name), "w", encoding="utf-8") as f:
            f.write(out)
        written.add(name)
    for fn in os.listdir(dst):
        if fn.endswith(".json") and fn not in written:
            os.remove(os.path.join(dst, fn))
    print("wrote %d schema files to %s" % (len(written), dst))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
