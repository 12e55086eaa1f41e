#!/usr/bin/python3
"""Generates the Kafka message codec from the facts-only schemas in src/protocol/schema/.

    gen_protocol.py SCHEMA_DIR OUT_DIR

Writes, under OUT_DIR (the build dir; nothing generated is committed):
  protocol/messages/<snake_name>.h/.cc  one struct per message with decode/encode/encoded_size
  protocol/messages.h                   includes every message; ORDO_PROTOCOL_APIS X-macro
  protocol/api_table.cc                 the API table (key, name, versions, flexible versions)
  protocol/testing/fill_random_<k>.cc   fill_random() for every struct + round-trip cases
Standard library only; the output is deterministic.
"""

import json
import os
import re
import sys

MAXV = 32767
TEST_GROUPS = 4
SCALARS = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
           "uint16": "uint16_t", "float64": "double", "bool": "bool", "uuid": "Uuid",
           "string": "std::string", "bytes": "std::vector<uint8_t>", "records": "Records"}


def snake(name):
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def vrange(s):
    """(lo, hi) or None for "none"/absent."""
    if s is None or s == "none":
        return None
    if s.endswith("+"):
        return (int(s[:-1]), MAXV)
    if "-" in s:
        a, b = s.split("-")
        return (int(a), int(b))
    return (int(s), int(s))


def cond(r):
    """C++ condition that version lies in range r."""
    if r is None:
        return "false"
    lo, hi = r
    parts = []
    if lo > 0:
        parts.append("version >= %d" % lo)
    if hi < MAXV:
        parts.append("version <= %d" % hi)
    return " && ".join(parts) if parts else "true"


def intersect(a, b):
    if a is None or b is None:
        return None
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else None


class Struct:
    def __init__(self, name, fields):
        self.name = name
        self.fields = fields


class Msg:
    def __init__(self, d):
        self.d = d
        self.name = d["name"]
        self.valid = vrange(d["validVersions"])
        self.flex = vrange(d.get("flexibleVersions"))
        self.structs = []  # in dependency order (children first)
        self.struct_names = set()
        commons = {s["name"]: s for s in d.get("commonStructs", [])}
        done = set()

        def add_common(n):
            if n in done:
                return
            done.add(n)
            self.collect(commons[n]["fields"], add_common, commons)
            self.structs.append(Struct(n, commons[n]["fields"]))
            self.struct_names.add(n)
        for n in commons:
            add_common(n)
        self.collect(d["fields"], add_common, commons)
        self.fields = d["fields"]

    def collect(self, fields, add_common, commons):
        for f in fields:
            t = elem_type(f["type"])
            if "fields" in f:
                self.collect(f["fields"], add_common, commons)
                self.structs.append(Struct(t, f["fields"]))
                self.struct_names.add(t)
            elif t in commons:
                add_common(t)


def elem_type(t):
    return t[2:] if t.startswith("[]") else t


def cpp_type(f):
    t = f["type"]
    nullable = vrange(f.get("nullableVersions")) is not None
    if t.startswith("[]"):
        e = elem_type(t)
        base = "std::vector<%s>" % SCALARS.get(e, e)
    else:
        base = SCALARS.get(t, t)
    return "std::optional<%s>" % base if nullable else base


def init_expr(f):
    """Member initializer (without braces) or None for value-initialization."""
    t = f["type"]
    dflt = f.get("default")
    if dflt is None:
        return None
    dflt = str(dflt)
    if dflt == "null":
        return None
    if t in ("int8", "int16", "int32", "int64", "uint16"):
        v = int(dflt, 0)
        if v == 0:
            return None
        if t == "int32" and v == -2**31:
            return "std::numeric_limits<int32_t>::min()"
        return str(v)
    if t == "bool":
        return "true" if dflt.lower() == "true" else None
    if t == "float64":
        return dflt
    if t == "string":
        return None if dflt == "" else json.dumps(dflt)
    raise SystemExit("unsupported default %r for %s" % (dflt, f["name"]))


class Field:
    def __init__(self, f, msg):
        self.f = f
        self.name = snake(f["name"])
        self.versions = intersect(vrange(f["versions"]), msg.valid)
        self.nullable = vrange(f.get("nullableVersions"))
        self.tagged = vrange(f.get("taggedVersions"))
        self.tag = None if f.get("tag") is None else int(f["tag"])
        self.no_flex = f.get("flexibleVersions") == "none"
        self.ctype = cpp_type(f)
        self.init = init_expr(f)

    def ctx(self, tagged=False):
        compact = "false" if self.no_flex else ("true" if tagged else "flexible")
        nullable = cond(self.nullable) if self.nullable else "false"
        return "FieldCtx{version, %s, %s}" % (compact, nullable)

    def default_value(self):
        return "%s(%s)" % (self.ctype, self.init or "")


def gen_struct_decl(s, msg, ind):
    out = []
    p = " " * ind
    out.append("%sstruct %s {" % (p, s.name))
    if s is msg:
        if "apiKey" in msg.d:
            out.append("%s  static constexpr int16_t kApiKey = %d;" % (p, msg.d["apiKey"]))
        out.append('%s  static constexpr const char* kName = "%s";' % (p, msg.name))
        out.append("%s  static constexpr int16_t kMinVersion = %d;" % (p, msg.valid[0]))
        out.append("%s  static constexpr int16_t kMaxVersion = %d;" % (p, msg.valid[1]))
        out.append("%s  // -1: no flexible version." % p)
        out.append("%s  static constexpr int16_t kFirstFlexibleVersion = %d;" %
                   (p, msg.flex[0] if msg.flex else -1))
        out.append("")
        for sub in msg.structs:
            out.extend(gen_struct_decl(sub, msg, ind + 2))
            out.append("")
    for f in s.fields:
        fl = Field(f, msg)
        out.append("%s  %s %s%s;" % (p, fl.ctype, fl.name, "{%s}" % fl.init if fl.init else "{}"))
    out.append("%s  std::vector<RawTaggedField> unknown_tagged_fields;" % p)
    out.append("")
    out.append("%s  bool operator==(const %s&) const = default;" % (p, s.name))
    out.append("%s  Result<void> decode(Reader& r, int16_t version);" % p)
    out.append("%s  void encode(Writer& w, int16_t version) const;" % p)
    out.append("%s  size_t encoded_size(int16_t version) const;" % p)
    out.append("%s};" % p)
    return out


def flex_line(msg):
    return "  (void)version;\n  [[maybe_unused]] const bool flexible = %s;" % cond(msg.flex)


def split_fields(s, msg):
    regular, tagged = [], []
    for f in s.fields:
        fl = Field(f, msg)
        if fl.versions is None:
            continue
        (tagged if fl.tag is not None else regular).append(fl)
    tagged.sort(key=lambda x: x.tag)
    return regular, tagged


def gen_struct_impl(s, msg, q):
    regular, tagged = split_fields(s, msg)
    out = []
    # decode
    out.append("Result<void> %s::decode(Reader& r, int16_t version) {" % q)
    out.append("  *this = %s{};" % s.name)
    out.append(flex_line(msg))
    for fl in regular:
        out.append("  if (%s) ORDO_PROTO_FIELD(decode_value(r, %s, %s), \"%s\");" %
                   (cond(fl.versions), fl.name, fl.ctx(), fl.name))
    out.append("  if (flexible) {")
    out.append("    uint32_t count = 0;")
    out.append("    ORDO_PROTO_FIELD(r.read_uvarint(count), \"tagged_fields\");")
    out.append("    for (uint32_t i = 0; i < count; ++i) {")
    out.append("      uint32_t tag = 0;")
    out.append("      std::span<const uint8_t> data;")
    out.append("      ORDO_PROTO_FIELD(read_tag(r, tag, data), \"tagged_fields\");")
    for fl in tagged:
        out.append("      if (tag == %d && (%s)) {" % (fl.tag, cond(intersect(fl.tagged, fl.versions))))
        out.append("        ORDO_PROTO_FIELD(decode_tagged(data, r.max_length(), %s, %s), \"%s\");" %
                   (fl.name, fl.ctx(True), fl.name))
        out.append("        continue;")
        out.append("      }")
    out.append("      unknown_tagged_fields.push_back({tag, std::vector<uint8_t>(data.begin(), data.end())});")
    out.append("    }")
    out.append("  }")
    out.append("  return ok();")
    out.append("}")
    out.append("")

    def tagged_prelude(o):
        o.append("    size_t count = unknown_tagged_fields.size();")
        for fl in tagged:
            o.append("    const bool has_%s = (%s) && !(%s == %s);" %
                     (fl.name, cond(intersect(fl.tagged, fl.versions)), fl.name, fl.default_value()))
            o.append("    count += has_%s ? 1 : 0;" % fl.name)
    # encode
    out.append("void %s::encode(Writer& w, int16_t version) const {" % q)
    out.append(flex_line(msg))
    for fl in regular:
        out.append("  if (%s) encode_value(w, %s, %s);" % (cond(fl.versions), fl.name, fl.ctx()))
    out.append("  if (flexible) {")
    tagged_prelude(out)
    out.append("    w.write_uvarint(count);")
    out.append("    size_t u = 0;")
    for fl in tagged:
        out.append("    u = encode_unknown_tags(w, unknown_tagged_fields, u, %d);" % fl.tag)
        out.append("    if (has_%s) encode_tagged(w, %d, %s, %s);" % (fl.name, fl.tag, fl.name, fl.ctx(True)))
    out.append("    encode_unknown_tags(w, unknown_tagged_fields, u, UINT64_MAX);")
    out.append("  }")
    out.append("}")
    out.append("")
    # size
    out.append("size_t %s::encoded_size(int16_t version) const {" % q)
    out.append(flex_line(msg))
    out.append("  size_t n = 0;")
    for fl in regular:
        out.append("  if (%s) n += size_value(%s, %s);" % (cond(fl.versions), fl.name, fl.ctx()))
    out.append("  if (flexible) {")
    tagged_prelude(out)
    out.append("    n += uvarint_bytes(count) + size_unknown_tags(unknown_tagged_fields);")
    for fl in tagged:
        out.append("    if (has_%s) n += size_tagged(%d, %s, %s);" % (fl.name, fl.tag, fl.name, fl.ctx(True)))
    out.append("  }")
    out.append("  return n;")
    out.append("}")
    out.append("")
    return out


def gen_fill_random(s, msg, q):
    regular, tagged = split_fields(s, msg)
    out = ["void fill_random(%s& v, Random& rnd, int16_t version) {" % q, flex_line(msg)]
    for fl in regular:
        out.append("  if (%s) random_value(v.%s, rnd, %s);" % (cond(fl.versions), fl.name, fl.ctx()))
    for fl in tagged:
        out.append("  if (flexible && (%s) && rnd.chance(0.7)) random_value(v.%s, rnd, %s);" %
                   (cond(intersect(fl.tagged, fl.versions)), fl.name, fl.ctx(True)))
    top = max([fl.tag for fl in tagged] + [-1]) + 1
    out.append("  if (flexible) random_unknown_tags(v.unknown_tagged_fields, rnd, %d);" % top)
    out.append("}")
    out.append("")
    return out


HEADER_TOP = """// Generated by tools/gen_protocol.py from src/protocol/schema/%s.json. Do not edit.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "protocol/codec.h"

namespace ordo::protocol {

"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv):
    schema_dir, out = argv[1], argv[2]
    msgs = []
    for fn in sorted(os.listdir(schema_dir)):
        if fn.endswith(".json"):
            with open(os.path.join(schema_dir, fn), encoding="utf-8") as f:
                msgs.append(Msg(json.load(f)))
    base = os.path.join(out, "protocol")
    for m in msgs:
        sn = snake(m.name)
        h = HEADER_TOP % m.name + "\n".join(gen_struct_decl(m, m, 0)) + "\n\n}  // namespace ordo::protocol\n"
        write(os.path.join(base, "messages", sn + ".h"), h)
        cc = ["// Generated by tools/gen_protocol.py. Do not edit.",
              '#include "protocol/messages/%s.h"' % sn, "", "namespace ordo::protocol {", ""]
        for s in m.structs:
            cc += gen_struct_impl(s, m, "%s::%s" % (m.name, s.name))
        cc += gen_struct_impl(m, m, m.name)
        cc += ["}  // namespace ordo::protocol", ""]
        write(os.path.join(base, "messages", sn + ".cc"), "\n".join(cc))

    by_name = {m.name: m for m in msgs}
    reqs = sorted((m for m in msgs if m.d.get("type") == "request"), key=lambda m: m.d["apiKey"])
    umb = ["// Generated by tools/gen_protocol.py. Do not edit.", "#pragma once", ""]
    umb += ['#include "protocol/messages/%s.h"' % snake(m.name) for m in msgs]
    umb += ["", "// X(api_key, RequestType, ResponseType) for every API.",
            "#define ORDO_PROTOCOL_APIS(X) \\"]
    for m in reqs:
        umb.append("  X(%d, %s, %s) \\" % (m.d["apiKey"], m.name,
                                           m.name[:-len("Request")] + "Response"))
    umb += ["", ""]
    write(os.path.join(base, "messages.h"), "\n".join(umb))

    tab = ["// Generated by tools/gen_protocol.py. Do not edit.", '#include "protocol/api.h"', "",
           "namespace ordo::protocol {", "", "std::span<const ApiInfo> all_apis() {",
           "  static constexpr ApiInfo kApis[] = {"]
    for m in reqs:
        resp = by_name[m.name[:-len("Request")] + "Response"]
        assert resp.valid == m.valid, m.name
        tab.append('      {%d, "%s", %d, %d, %d, %s},' % (
            m.d["apiKey"], m.name[:-len("Request")], m.valid[0], m.valid[1],
            m.flex[0] if m.flex else -1, "true" if m.d.get("latestVersionUnstable") else "false"))
    tab += ["  };", "  return kApis;", "}", "", "}  // namespace ordo::protocol", ""]
    write(os.path.join(base, "api_table.cc"), "\n".join(tab))

    for k in range(TEST_GROUPS):
        group = [m for i, m in enumerate(msgs) if i % TEST_GROUPS == k]
        t = ["// Generated by tools/gen_protocol.py. Do not edit.", '#include "protocol/tests/random_fill.h"', ""]
        t += ['#include "protocol/messages/%s.h"' % snake(m.name) for m in group]
        t += ["", "namespace ordo::protocol {", ""]
        for m in group:
            for s in m.structs:
                t.append("void fill_random(%s::%s& v, Random& rnd, int16_t version);" % (m.name, s.name))
            t.append("void fill_random(%s& v, Random& rnd, int16_t version);" % m.name)
        t.append("")
        for m in group:
            for s in m.structs:
                t += gen_fill_random(s, m, "%s::%s" % (m.name, s.name))
            t += gen_fill_random(m, m, m.name)
        t.append("std::vector<RoundTripCase> round_trip_cases_%d() {" % k)
        t.append("  return {")
        for m in group:
            t.append("      round_trip_case<%s>()," % m.name)
        t += ["  };", "}", "", "}  // namespace ordo::protocol", ""]
        write(os.path.join(base, "testing", "fill_random_%d.cc" % k), "\n".join(t))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
