// Helpers shared by the librdkafka load generators (broker_bench.cc, group_bench.cc): the
// monotonic clock, a one-line JSON writer, librdkafka configuration and handles, topic
// creation on Ordo (CreateTopics) or in librdkafka's mock cluster, and percentiles.
// Header-only; every program that includes it links PkgConfig::RDKAFKA.
#pragma once

#include <errno.h>  // program_invocation_short_name (glibc)
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

namespace ordo_bench {

[[noreturn]] inline void fail(const std::string& msg) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, msg.c_str());
  std::exit(1);
}

inline int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// One JSON object on one line: the result of a run, read by the runner scripts.
class Json {
 public:
  Json& str(const char* k, const std::string& v) {
    std::string e;
    for (char c : v) {
      if (c == '"' || c == '\\') e += '\\';
      if (static_cast<unsigned char>(c) >= 0x20) e += c;
    }
    return raw(k, "\"" + e + "\"");
  }
  Json& num(const char* k, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return raw(k, buf);
  }
  Json& integer(const char* k, int64_t v) { return raw(k, std::to_string(v)); }
  Json& boolean(const char* k, bool v) { return raw(k, v ? "true" : "false"); }
  // A list of numbers, e.g. the per-round figures behind a median.
  Json& nums(const char* k, const std::vector<double>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%s%.6g", i ? ", " : "", v[i]);
      s += buf;
    }
    return raw(k, s + "]");
  }
  void print() const { std::printf("{%s}\n", body_.c_str()); }

 private:
  Json& raw(const char* k, const std::string& v) {
    if (!body_.empty()) body_ += ", ";
    body_ += "\"" + std::string(k) + "\": " + v;
    return *this;
  }
  std::string body_;
};

// The p-th percentile (0-100) of sorted samples; 0 when there are none.
template <typename T>
double percentile(const std::vector<T>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t i = size_t(p / 100.0 * double(sorted.size()));
  return double(sorted[std::min(i, sorted.size() - 1)]);
}

// ---- command line --------------------------------------------------------------------------

// `prog MODE [--flag [value]]...`: the constructor handles a missing mode and -h/--help (prints
// the usage and exits); next() steps through the flags, value()/number() take a flag's value.
class Args {
 public:
  Args(int argc, char** argv, const char* usage) : argc_(argc), argv_(argv), usage_(usage) {
    if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
      std::fputs(usage, argc < 2 ? stderr : stdout);
      std::exit(argc < 2 ? 2 : 0);
    }
  }
  std::string mode() const { return argv_[1]; }
  bool next() {
    if (++i_ >= argc_) return false;
    flag_ = argv_[i_];
    return true;
  }
  const std::string& flag() const { return flag_; }
  std::string value() {
    if (i_ + 1 >= argc_) fail("missing value for " + flag_);
    return argv_[++i_];
  }
  double number() {
    std::string v = value();
    char* end = nullptr;
    double d = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0') fail("bad number for " + flag_ + ": " + v);
    return d;
  }
  // --set NAME=VALUE
  std::pair<std::string, std::string> name_value() {
    std::string kv = value();
    auto eq = kv.find('=');
    if (eq == std::string::npos) fail(flag_ + " needs NAME=VALUE: " + kv);
    return {kv.substr(0, eq), kv.substr(eq + 1)};
  }
  [[noreturn]] void unknown() const { fail("unknown argument " + flag_ + "\n" + usage_); }

 private:
  int argc_;
  char** argv_;
  const char* usage_;
  int i_ = 1;
  std::string flag_;
};

// ---- librdkafka ---------------------------------------------------------------------------

inline void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK)
    fail("librdkafka config " + name + "=" + value + ": " + err);
}

// Warnings and errors; debug lines too (librdkafka emits them only when asked: --set debug=...).
inline void log_cb(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 4 || level == 7)
    std::fprintf(stderr, "%.6f librdkafka %s: %s\n", double(now_ns()) / 1e9, fac, buf);
}

inline void error_cb(rd_kafka_t*, int err, const char* reason, void*) {
  std::fprintf(stderr, "librdkafka error %s: %s\n",
               rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason);
}

// Base config of every handle: the target (a bootstrap list, or with mock a new one-broker
// mock cluster inside this handle), the client id, no Nagle, quiet logs.
inline rd_kafka_conf_t* base_conf(const std::string& bootstrap, bool mock,
                                  const std::string& client_id) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (mock) {
    set(conf, "test.mock.num.brokers", "1");
  } else {
    set(conf, "bootstrap.servers", bootstrap);
  }
  set(conf, "client.id", client_id);
  set(conf, "socket.nagle.disable", "true");
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_error_cb(conf, error_cb);
  return conf;
}

inline rd_kafka_t* new_handle(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof err);
  if (!rk) fail(std::string("rd_kafka_new: ") + err);
  return rk;
}

// The topic's partition count from a metadata request, or -1 when it is not (yet) there.
inline int metadata_partitions(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  int count = -1;
  if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->topic_cnt; ++i) {
      if (topic == md->topics[i].topic && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        count = md->topics[i].partition_cnt;
    }
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(rkt);
  return count;
}

// Waits (up to 10 s) until metadata shows the topic with this many partitions.
inline void await_topic(rd_kafka_t* rk, const std::string& topic, int partitions) {
  for (int i = 0; i < 100; ++i) {
    int n = metadata_partitions(rk, topic);
    if (n == partitions) return;
    if (n > 0 && n != partitions)
      fail("topic " + topic + " has " + std::to_string(n) + " partitions, not " +
           std::to_string(partitions));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fail("topic " + topic + " did not appear in metadata");
}

// Creates the topic with P partitions (CreateTopics; an existing topic must have P), or in the
// handle's mock cluster. Returns when metadata shows it.
inline void ensure_topic(rd_kafka_t* rk, const std::string& topic, bool mock, int partitions) {
  if (mock) {
    rd_kafka_mock_cluster_t* mc = rd_kafka_handle_mock_cluster(rk);
    if (!mc) fail("no mock cluster on this handle");
    rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topic.c_str(), partitions, 1);
    if (err) fail(std::string("mock topic create: ") + rd_kafka_err2str(err));
  } else {
    char errstr[512];
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(topic.c_str(), partitions, 1, errstr, sizeof errstr);
    if (!nt) fail(std::string("NewTopic: ") + errstr);
    rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, nullptr, q);
    rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
    if (!ev) fail("CreateTopics timed out");
    if (rd_kafka_event_error(ev))
      fail(std::string("CreateTopics: ") + rd_kafka_event_error_string(ev));
    const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t** tr = rd_kafka_CreateTopics_result_topics(res, &n);
    for (size_t i = 0; i < n; ++i) {
      rd_kafka_resp_err_t err = rd_kafka_topic_result_error(tr[i]);
      if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
        fail(std::string("CreateTopics ") + topic + ": " + rd_kafka_err2name(err));
    }
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
  }
  await_topic(rk, topic, partitions);
}

}  // namespace ordo_bench
