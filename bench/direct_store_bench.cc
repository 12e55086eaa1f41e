// Direct-write peers of the aggregate and search sinks (bench/run-sink-bench): an application
// that keeps the same derived state itself, with no log in between, writing the same rows in the
// same batches. It prints one JSON line: {"mode", "records", "seconds", "records_per_s"}.
//
//   direct_store_bench aggregate|search --dir DIR --records N --ids M [--batch B]
//
// The rows are the sink benchmark's: record k is row id k % M, mailbox id % 16, unread when
// id % 3 == 0, size k % 1000, a 40-byte body, so half the records overwrite an earlier row.
//
// aggregate: unread count and size sum per mailbox in RocksDB. Per record the application reads
// the row's previous contribution (to retract it) and the groups it moves between, then writes
// the new contribution and the groups' values; each batch is one WriteBatch written with
// sync = true, as the sink writes its batches. State is fixed-width binary (the sink stores
// JSON): the peer does no parsing and no formatting, the least work this state needs.
//
// search: documents in Xapian, one per row id (a unique id term, the row's JSON as data, name
// and body indexed with the English stemmer, as the sink indexes them), a commit (fsync) every
// batch.
#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#include <xapian.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace {

struct Args {
  std::string mode;
  std::string dir;
  int64_t records = 0;
  int64_t ids = 0;
  int64_t batch = 500;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "direct_store_bench: %s\nusage: direct_store_bench aggregate|search --dir DIR "
               "--records N --ids M [--batch B]\n",
               why);
  std::exit(2);
}

int64_t positive(const char* text) {
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v <= 0) usage("counts are positive integers");
  return v;
}

Args parse(int argc, char** argv) {
  if (argc < 2) usage("no mode");
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) usage("an option without its value");
    std::string_view opt = argv[i];
    if (opt == "--dir") {
      a.dir = argv[i + 1];
    } else if (opt == "--records") {
      a.records = positive(argv[i + 1]);
    } else if (opt == "--ids") {
      a.ids = positive(argv[i + 1]);
    } else if (opt == "--batch") {
      a.batch = positive(argv[i + 1]);
    } else {
      usage("unknown option");
    }
  }
  if ((a.mode != "aggregate" && a.mode != "search") || a.dir.empty() || a.records == 0 ||
      a.ids == 0) {
    usage("a mode, --dir, --records and --ids are required");
  }
  return a;
}

struct Row {
  int64_t id;
  int64_t mailbox;
  bool unread;
  int64_t size;
};

Row row(int64_t k, int64_t ids) {
  const int64_t id = k % ids;
  return Row{id, id % 16, id % 3 == 0, k % 1000};
}

constexpr std::string_view kBody = "lorem ipsum dolor sit amet lorem ipsum do";

// Fixed-width little-endian pairs: a key's (mailbox, size) contribution, a group's (count, sum).
std::string pack(int64_t a, int64_t b) {
  std::string out(16, '\0');
  std::memcpy(out.data(), &a, 8);
  std::memcpy(out.data() + 8, &b, 8);
  return out;
}

std::pair<int64_t, int64_t> unpack(const std::string& v) {
  if (v.size() != 16) {
    std::fprintf(stderr, "direct_store_bench: a stored value of %zu bytes\n", v.size());
    std::exit(1);
  }
  int64_t a = 0;
  int64_t b = 0;
  std::memcpy(&a, v.data(), 8);
  std::memcpy(&b, v.data() + 8, 8);
  return {a, b};
}

std::string key_of(char prefix, int64_t v) {
  std::string out(1, prefix);
  out.append(reinterpret_cast<const char*>(&v), 8);
  return out;
}

void check(const rocksdb::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "direct_store_bench: %s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

// Returns the number of groups at the end (a check the work was done).
int64_t run_aggregate(const Args& a) {
  rocksdb::Options options;
  options.create_if_missing = true;
  rocksdb::DB* raw = nullptr;
  check(rocksdb::DB::Open(options, a.dir, &raw), "open");
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  for (int64_t start = 0; start < a.records; start += a.batch) {
    const int64_t end = std::min(a.records, start + a.batch);
    // The batch's overlays of stored state: key -> contribution (nullopt: none), group -> value.
    std::map<int64_t, std::optional<std::pair<int64_t, int64_t>>> keys;
    std::map<int64_t, std::pair<int64_t, int64_t>> groups;
    auto group = [&](int64_t g) -> std::pair<int64_t, int64_t>& {
      auto it = groups.find(g);
      if (it == groups.end()) {
        std::string v;
        auto s = db->Get(rocksdb::ReadOptions(), key_of('g', g), &v);
        std::pair<int64_t, int64_t> value{0, 0};
        if (!s.IsNotFound()) {
          check(s, "read group");
          value = unpack(v);
        }
        it = groups.emplace(g, value).first;
      }
      return it->second;
    };
    for (int64_t k = start; k < end; ++k) {
      const Row r = row(k, a.ids);
      auto it = keys.find(r.id);
      if (it == keys.end()) {
        std::string v;
        auto s = db->Get(rocksdb::ReadOptions(), key_of('k', r.id), &v);
        std::optional<std::pair<int64_t, int64_t>> old;
        if (!s.IsNotFound()) {
          check(s, "read key");
          old = unpack(v);
        }
        it = keys.emplace(r.id, old).first;
      }
      if (it->second) {
        auto& g = group(it->second->first);
        g.first -= 1;
        g.second -= it->second->second;
      }
      it->second.reset();
      if (r.unread) {
        auto& g = group(r.mailbox);
        g.first += 1;
        g.second += r.size;
        it->second = std::make_pair(r.mailbox, r.size);
      }
    }
    rocksdb::WriteBatch wb;
    for (const auto& [g, v] : groups) {
      check(v.first == 0 ? wb.Delete(key_of('g', g))
                         : wb.Put(key_of('g', g), pack(v.first, v.second)),
            "batch");
    }
    for (const auto& [k, c] : keys) {
      check(c ? wb.Put(key_of('k', k), pack(c->first, c->second)) : wb.Delete(key_of('k', k)),
            "batch");
    }
    check(db->Write(wo, &wb), "write");
  }
  int64_t n = 0;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek("g"); it->Valid() && it->key().starts_with("g"); it->Next()) ++n;
  check(it->status(), "scan groups");
  return n;
}

int64_t run_search(const Args& a) {
  Xapian::WritableDatabase db(a.dir, Xapian::DB_CREATE_OR_OPEN);
  Xapian::TermGenerator tg;
  tg.set_stemmer(Xapian::Stem("english"));
  char buf[256];
  for (int64_t start = 0; start < a.records; start += a.batch) {
    const int64_t end = std::min(a.records, start + a.batch);
    for (int64_t k = start; k < end; ++k) {
      const Row r = row(k, a.ids);
      const int len = std::snprintf(
          buf, sizeof buf,
          "{\"id\":%lld,\"name\":\"user%lld\",\"mailbox\":%lld,\"unread\":%s,\"size\":%lld,"
          "\"body\":\"%.*s\"}",
          static_cast<long long>(r.id), static_cast<long long>(r.id),
          static_cast<long long>(r.mailbox), r.unread ? "true" : "false",
          static_cast<long long>(r.size), static_cast<int>(kBody.size()), kBody.data());
      Xapian::Document doc;
      doc.set_data(std::string(buf, static_cast<size_t>(len)));
      const std::string id = "Q{\"id\":" + std::to_string(r.id) + "}";
      doc.add_boolean_term(id);
      tg.set_document(doc);
      tg.index_text("user" + std::to_string(r.id) + "\n" + std::string(kBody) + "\n");
      db.replace_document(id, doc);
    }
    db.commit();
  }
  return static_cast<int64_t>(db.get_doccount());
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t result = 0;
  try {
    result = a.mode == "aggregate" ? run_aggregate(a) : run_search(a);
  } catch (const Xapian::Error& e) {
    std::fprintf(stderr, "direct_store_bench: %s\n", e.get_description().c_str());
    return 1;
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf(
      "{\"mode\":\"%s\",\"records\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f,"
      "\"result\":%lld}\n",
      a.mode.c_str(), static_cast<long long>(a.records), s, static_cast<double>(a.records) / s,
      static_cast<long long>(result));
  return 0;
}
