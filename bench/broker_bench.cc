// Load generator for the broker benchmark (bench/run-broker-bench, `make bench-broker`).
//
// Kafka modes (librdkafka, against Ordo or, with --mock, librdkafka's built-in mock cluster):
//   produce       N messages of --value-size bytes, round-robin over P partitions (or by key
//                 with --keyed); msgs/s and MB/s from the first send to the last delivery report
//   consume       N messages from offset 0 of every partition (legacy queue consumer, no group);
//                 msgs/s from the start of fetching to the N-th message
//   latency       --rate messages/s for --duration s, acks=-1 (or --acks 1), linger.ms=0; the
//                 time from each send to its delivery report
//   ping-latency  the floor: ApiVersions requests on one raw TCP connection at the same rate,
//                 the time from each write to its response
//   fdatasync-latency
//                 the disk's floor for a durable ack: append + fdatasync of one value in --dir
// Redis modes (hiredis; Redis Streams):
//   redis-produce N XADDs, pipelined (--pipeline commands per write, two writes in flight)
//   redis-latency one XADD at a time at --rate, the time from each write to its reply
//   redis-ping    the same with PING: Redis's floor
//
// Every mode prints one JSON object on stdout; progress and errors go to stderr. Latency modes
// send open-loop (a send is never held back by a reply still outstanding, except in the Redis
// modes' single in-order connection, where a slow reply delays nothing either: replies are read
// by a second thread) and discard the first --warmup seconds.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#ifdef ORDO_HAVE_HIREDIS
#include <hiredis/hiredis.h>
#endif

#include "kafka_bench.h"

namespace {

using namespace ordo_bench;

// CPU seconds (user + system) of this process so far, all threads.
double cpu_seconds() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

void sleep_until_ns(int64_t t) {
  timespec ts{.tv_sec = time_t(t / 1'000'000'000), .tv_nsec = long(t % 1'000'000'000)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

// ---- options ------------------------------------------------------------------------------

struct Options {
  std::string mode;
  std::string bootstrap = "127.0.0.1:9092";
  std::string topic = "bench";
  std::string host = "127.0.0.1";  // redis-* and ping-latency: host and port
  int port = 0;
  int64_t messages = 1'000'000;
  int partitions = 1;
  int acks = 2;  // not given: 1 for produce, -1 for latency
  bool keyed = false;
  int64_t key_space = 0;  // > 0: keys are the message number modulo this (overwrites)
  bool mock = false;
  int value_size = 100;
  double rate = 10'000;
  double duration = 10;
  double warmup = 1;
  int pipeline = 1000;
  int producers = 1;
  std::string dir;  // fdatasync-latency: where the file goes
  std::string label;
  std::vector<std::pair<std::string, std::string>> extra;  // --set NAME=VALUE for librdkafka
};

const char* kUsage =
    "usage: broker_bench MODE [options]\n"
    "modes: produce consume latency ping-latency fdatasync-latency redis-produce redis-latency\n"
    "       redis-ping\n"
    "  --bootstrap HOST:PORT   Kafka bootstrap (default 127.0.0.1:9092)\n"
    "  --mock                  use librdkafka's mock cluster instead (test.mock.num.brokers=1)\n"
    "  --topic NAME            topic, or Redis stream key (default bench)\n"
    "  --messages N            produce/consume count (default 1000000)\n"
    "  --partitions P          partitions to create and spread over (default 1)\n"
    "  --keyed                 partition by key (the message number) instead of round-robin\n"
    "  --key-space N           produce: keys are the message number modulo N (implies --keyed;\n"
    "                          a compacted topic then holds N live keys)\n"
    "  --acks 1|-1             acks (default 1 for produce, -1 for latency)\n"
    "  --value-size BYTES      message value size (default 100)\n"
    "  --rate R --duration S   latency modes: messages/s (default 10000) and seconds (10)\n"
    "  --warmup S              latency modes: seconds sent first and not counted (default 1)\n"
    "  --host H --port P       ping-latency and redis-*: server address\n"
    "  --pipeline N            redis-produce: commands per pipelined write (default 1000)\n"
    "  --producers K           produce: K producer instances on K threads (default 1)\n"
    "  --dir DIR               fdatasync-latency: directory of the scratch file\n"
    "  --set NAME=VALUE        extra librdkafka property (repeatable)\n"
    "  --label TEXT            copied into the JSON output\n";

Options parse(int argc, char** argv) {
  Args args(argc, argv, kUsage);
  Options o;
  o.mode = args.mode();
  while (args.next()) {
    const std::string& a = args.flag();
    auto value = [&] { return args.value(); };
    auto number = [&] { return args.number(); };
    if (a == "--bootstrap")
      o.bootstrap = value();
    else if (a == "--topic")
      o.topic = value();
    else if (a == "--host")
      o.host = value();
    else if (a == "--port")
      o.port = int(number());
    else if (a == "--messages")
      o.messages = int64_t(number());
    else if (a == "--partitions")
      o.partitions = int(number());
    else if (a == "--acks")
      o.acks = int(number());
    else if (a == "--keyed")
      o.keyed = true;
    else if (a == "--key-space") {
      o.key_space = int64_t(number());
      o.keyed = true;
    } else if (a == "--mock")
      o.mock = true;
    else if (a == "--value-size")
      o.value_size = int(number());
    else if (a == "--rate")
      o.rate = number();
    else if (a == "--duration")
      o.duration = number();
    else if (a == "--warmup")
      o.warmup = number();
    else if (a == "--pipeline")
      o.pipeline = int(number());
    else if (a == "--producers")
      o.producers = int(number());
    else if (a == "--dir")
      o.dir = value();
    else if (a == "--label")
      o.label = value();
    else if (a == "--set")
      o.extra.push_back(args.name_value());
    else
      args.unknown();
  }
  if (o.acks == 2) o.acks = o.mode == "latency" ? -1 : 1;
  if (o.messages < 1 || o.partitions < 1 || o.value_size < 0 || o.rate <= 0 || o.duration <= 0 ||
      o.warmup < 0 || o.pipeline < 1 || o.producers < 1 || (o.acks != 1 && o.acks != -1))
    fail("option out of range");
  return o;
}

// ---- JSON output --------------------------------------------------------------------------

Json header(const Options& o, const char* target) {
  Json j;
  j.str("mode", o.mode).str("target", target);
  if (!o.label.empty()) j.str("label", o.label);
  return j;
}

void throughput_fields(Json& j, int64_t messages, int value_size, double seconds) {
  j.integer("messages", messages)
      .integer("value_bytes", value_size)
      .num("seconds", seconds)
      .num("msgs_per_s", double(messages) / seconds)
      .num("mb_per_s", double(messages) * value_size / 1e6 / seconds);
}

// Latency samples in nanoseconds -> percentiles in microseconds.
void latency_fields(Json& j, std::vector<int64_t>& lat, const Options& o, double send_seconds,
                    int64_t max_lag_ns, int64_t late_sends) {
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return percentile(lat, p) / 1000.0; };
  double sum = 0;
  for (int64_t v : lat) sum += double(v);
  j.num("rate", o.rate)
      .num("duration_s", o.duration)
      .integer("count", int64_t(lat.size()))
      .num("achieved_rate", send_seconds > 0 ? double(lat.size()) / send_seconds : 0)
      .num("p50_us", pct(50))
      .num("p90_us", pct(90))
      .num("p99_us", pct(99))
      .num("p999_us", pct(99.9))
      .num("max_us", lat.empty() ? 0 : double(lat.back()) / 1000.0)
      .num("mean_us", lat.empty() ? 0 : sum / double(lat.size()) / 1000.0)
      .num("max_send_lag_us", double(max_lag_ns) / 1000.0)
      .integer("late_sends", late_sends);
}

// ---- librdkafka ---------------------------------------------------------------------------

void apply_extra(rd_kafka_conf_t* conf, const Options& o) {
  for (const auto& [k, v] : o.extra) set(conf, k, v);
}

// Producer state shared with the delivery-report callback (which runs inside rd_kafka_poll).
struct ProduceState {
  int64_t delivered = 0;
  int64_t failed = 0;
  int64_t target = 0;
  int64_t last_ns = 0;
  rd_kafka_resp_err_t first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  // latency mode
  std::vector<std::atomic<int64_t>>* send_ns = nullptr;
  std::vector<int64_t>* done_ns = nullptr;
};

void dr_cb(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  auto* s = static_cast<ProduceState*>(opaque);
  int64_t t = now_ns();
  if (m->err) {
    if (!s->failed) s->first_error = m->err;
    ++s->failed;
  } else {
    ++s->delivered;
    if (s->done_ns) (*s->done_ns)[reinterpret_cast<uintptr_t>(m->_private)] = t;
  }
  if (s->delivered + s->failed == s->target) s->last_ns = t;
}

rd_kafka_t* new_producer(const Options& o, ProduceState* state, int acks, bool latency) {
  rd_kafka_conf_t* conf = base_conf(o.bootstrap, o.mock, "ordo-broker-bench");
  set(conf, "acks", std::to_string(acks));
  set(conf, "enable.idempotence", "false");
  set(conf, "compression.codec", "none");
  if (latency) {
    set(conf, "linger.ms", "0");
  } else {
    set(conf, "linger.ms", "5");
    set(conf, "batch.num.messages", "10000");
    set(conf, "batch.size", "1000000");
    set(conf, "queue.buffering.max.messages", "2000000");
    set(conf, "queue.buffering.max.kbytes", "2097151");
  }
  set(conf, "message.timeout.ms", "120000");
  apply_extra(conf, o);
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, state);
  return new_handle(RD_KAFKA_PRODUCER, conf);
}

// Sends N messages as fast as the client takes them. Returns seconds from the first send to the
// last delivery report.
double produce_n(rd_kafka_t* rk, rd_kafka_topic_t* rkt, const Options& o, ProduceState& s,
                 int64_t n) {
  std::string value(size_t(o.value_size), 'x');
  for (size_t i = 0; i < value.size(); ++i) value[i] = char('a' + i % 26);
  s.target = n;
  s.delivered = s.failed = 0;
  char key[24];
  int64_t start = now_ns();
  for (int64_t i = 0; i < n; ++i) {
    int32_t partition = RD_KAFKA_PARTITION_UA;
    void* k = nullptr;
    size_t klen = 0;
    if (o.keyed) {
      klen =
          size_t(std::snprintf(key, sizeof key, "%" PRId64, o.key_space > 0 ? i % o.key_space : i));
      k = key;
    } else {
      partition = int32_t(i % o.partitions);
    }
    // Flags 0: the value is neither copied nor freed (it outlives the producer); the key is
    // always copied.
    while (rd_kafka_produce(rkt, partition, 0, value.data(), value.size(), k, klen, nullptr) ==
           -1) {
      rd_kafka_resp_err_t err = rd_kafka_last_error();
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        fail(std::string("produce: ") + rd_kafka_err2str(err));
      rd_kafka_poll(rk, 1);
    }
    if ((i & 1023) == 0) rd_kafka_poll(rk, 0);
  }
  int64_t deadline = now_ns() + 180'000'000'000;
  while (s.delivered + s.failed < n) {
    rd_kafka_poll(rk, 100);
    if (now_ns() > deadline) fail("delivery reports did not arrive within 180 s");
  }
  return double(s.last_ns - start) / 1e9;
}

// --producers K: K producer instances (each its own connection and librdkafka threads), each
// on a thread of its own sending N/K messages; the time runs from the common start to the last
// delivery report of any of them.
int run_produce(const Options& o) {
  int k = o.producers;
  std::vector<std::unique_ptr<ProduceState>> states;
  std::vector<rd_kafka_t*> handles;
  std::vector<rd_kafka_topic_t*> topics;
  for (int i = 0; i < k; ++i) {
    states.push_back(std::make_unique<ProduceState>());
    handles.push_back(new_producer(o, states.back().get(), o.acks, false));
    if (i == 0 || o.mock) ensure_topic(handles.back(), o.topic, o.mock, o.partitions);
    topics.push_back(rd_kafka_topic_new(handles.back(), o.topic.c_str(), nullptr));
  }
  double cpu0 = cpu_seconds();
  int64_t start = now_ns();
  std::vector<std::thread> threads;
  for (int i = 0; i < k; ++i) {
    int64_t n = o.messages / k + (i < o.messages % k ? 1 : 0);
    threads.emplace_back(
        [&, i, n] { produce_n(handles[size_t(i)], topics[size_t(i)], o, *states[size_t(i)], n); });
  }
  for (auto& t : threads) t.join();
  int64_t last = 0, failed = 0;
  rd_kafka_resp_err_t first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  for (const auto& st : states) {
    last = std::max(last, st->last_ns);
    if (st->failed && !failed) first_error = st->first_error;
    failed += st->failed;
  }
  double seconds = double(last - start) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  Json j = header(o, o.mock ? "mock" : "ordo");
  j.integer("partitions", o.partitions).integer("acks", o.acks).boolean("keyed", o.keyed);
  j.integer("key_space", o.key_space);
  j.integer("producers", k);
  throughput_fields(j, o.messages, o.value_size, seconds);
  j.num("client_cpu_s", cpu);
  j.integer("errors", failed);
  if (failed) j.str("first_error", rd_kafka_err2name(first_error));
  j.print();
  for (int i = 0; i < k; ++i) {
    rd_kafka_topic_destroy(topics[size_t(i)]);
    rd_kafka_destroy(handles[size_t(i)]);
  }
  return failed ? 1 : 0;
}

int run_consume(const Options& o) {
  // With --mock, messages are first produced into the mock cluster (not timed); the consumer
  // then connects to it like to any broker. A mock partition keeps only its newest 100,000
  // messages or 5 MB, so it is filled with at most 40,000 messages per partition, and the
  // consumer reads them again from offset 0 (a seek) until it has counted N.
  ProduceState s;
  rd_kafka_t* producer = nullptr;
  std::string bootstrap = o.bootstrap;
  int64_t round = o.messages;  // messages in the topic
  if (o.mock) {
    round = std::min<int64_t>(o.messages, int64_t(40'000) * o.partitions);
    producer = new_producer(o, &s, 1, false);
    ensure_topic(producer, o.topic, true, o.partitions);
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(producer, o.topic.c_str(), nullptr);
    produce_n(producer, rkt, o, s, round);
    if (s.failed) fail("filling the mock cluster failed");
    rd_kafka_topic_destroy(rkt);
    bootstrap = rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(producer));
  }
  rd_kafka_conf_t* conf = base_conf(bootstrap, false, "ordo-broker-bench");
  set(conf, "enable.partition.eof", "false");
  set(conf, "fetch.wait.max.ms", "100");
  set(conf, "fetch.min.bytes", "1");
  // 8 MiB per partition and per response: librdkafka receives each response into one buffer of
  // its full size, and glibc maps anything above 32 MiB afresh, so 50 MiB responses (its default
  // fetch.max.bytes, which 8 partitions fill) page-fault on every byte; on this VM that halved
  // the 8-partition rate (bench/results/2026-12-06-broker-rerun.md).
  set(conf, "fetch.max.bytes", "8388608");
  set(conf, "max.partition.fetch.bytes", "8388608");
  set(conf, "queued.min.messages", "1000000");
  set(conf, "queued.max.messages.kbytes", "1048576");
  set(conf, "check.crcs", "false");
  apply_extra(conf, o);
  rd_kafka_t* rk = new_handle(RD_KAFKA_CONSUMER, conf);
  int partitions = metadata_partitions(rk, o.topic);
  if (partitions < 1) fail("topic " + o.topic + " not found");
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, o.topic.c_str(), nullptr);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  double cpu0 = cpu_seconds();
  int64_t start = now_ns();
  for (int p = 0; p < partitions; ++p) {
    if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q) == -1)
      fail(std::string("consume_start: ") + rd_kafka_err2str(rd_kafka_last_error()));
  }
  std::vector<rd_kafka_message_t*> batch(10000);
  int64_t count = 0, bytes = 0, errors = 0, last_progress = now_ns(), in_round = 0, rounds = 1;
  while (count < o.messages) {
    if (in_round == round) {
      for (int p = 0; p < partitions; ++p) {
        if (rd_kafka_resp_err_t err = rd_kafka_seek(rkt, p, 0, 5000))
          fail(std::string("seek: ") + rd_kafka_err2str(err));
      }
      in_round = 0;
      ++rounds;
    }
    ssize_t n = rd_kafka_consume_batch_queue(q, 1000, batch.data(), batch.size());
    if (n < 0) fail(std::string("consume: ") + rd_kafka_err2str(rd_kafka_last_error()));
    for (ssize_t i = 0; i < n; ++i) {
      if (batch[size_t(i)]->err) {
        if (batch[size_t(i)]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          if (errors++ < 5)
            std::fprintf(stderr, "consume error: %s\n", rd_kafka_message_errstr(batch[size_t(i)]));
        }
      } else {
        ++count;
        ++in_round;
        bytes += int64_t(batch[size_t(i)]->len);
      }
      rd_kafka_message_destroy(batch[size_t(i)]);
    }
    if (n > 0) last_progress = now_ns();
    if (now_ns() - last_progress > 30'000'000'000)
      fail("no messages for 30 s after " + std::to_string(count));
  }
  double seconds = double(now_ns() - start) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  Json j = header(o, o.mock ? "mock" : "ordo");
  j.integer("partitions", partitions);
  throughput_fields(j, count, o.value_size, seconds);
  j.num("client_cpu_s", cpu);
  j.integer("value_bytes_seen", bytes).integer("errors", errors);
  if (o.mock) j.integer("rounds", rounds);
  j.print();
  for (int p = 0; p < partitions; ++p) rd_kafka_consume_stop(rkt, p);
  rd_kafka_queue_destroy(q);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  if (producer) rd_kafka_destroy(producer);
  return 0;
}

// ---- fixed-rate sending -------------------------------------------------------------------

// Calls send(i, t_ns) at start + i/rate for every i in [0, total). Returns how late the sends
// were: the largest lag and how many were later than one interval.
struct Pacing {
  int64_t max_lag_ns = 0;
  int64_t late = 0;
  int64_t first_counted_ns = 0;
  int64_t last_ns = 0;
};

Pacing paced(int64_t total, int64_t warm, double rate,
             const std::function<void(int64_t, int64_t)>& send) {
  Pacing p;
  double interval = 1e9 / rate;
  int64_t start = now_ns() + 1'000'000;
  for (int64_t i = 0; i < total; ++i) {
    int64_t target = start + int64_t(double(i) * interval);
    int64_t t = now_ns();
    if (t < target) {
      sleep_until_ns(target);
      t = now_ns();
    }
    if (i >= warm) {
      if (i == warm) p.first_counted_ns = t;
      p.max_lag_ns = std::max(p.max_lag_ns, t - target);
      if (double(t - target) > interval) ++p.late;
    }
    send(i, t);
    p.last_ns = t;
  }
  return p;
}

int run_latency(const Options& o) {
  ProduceState s;
  rd_kafka_t* rk = new_producer(o, &s, o.acks, true);
  ensure_topic(rk, o.topic, o.mock, o.partitions);
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, o.topic.c_str(), nullptr);
  int64_t warm = int64_t(o.warmup * o.rate);
  int64_t total = warm + int64_t(o.duration * o.rate);
  std::vector<std::atomic<int64_t>> send_ns(static_cast<size_t>(total));
  std::vector<int64_t> done_ns(size_t(total), 0);
  s.send_ns = &send_ns;
  s.done_ns = &done_ns;
  s.target = total;
  std::string value(size_t(o.value_size), 'l');
  // Delivery reports are served by a thread of their own that waits in rd_kafka_poll, so a
  // report is timed when librdkafka hands it over, not when the sender next looks.
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    while (!stop.load()) rd_kafka_poll(rk, 50);
  });
  Pacing p = paced(total, warm, o.rate, [&](int64_t i, int64_t t) {
    send_ns[size_t(i)].store(t, std::memory_order_release);
    int32_t partition = int32_t(i % o.partitions);
    // --key-space: keyed records (a compacted topic refuses keyless ones), same partition.
    char key[24];
    size_t klen =
        o.key_space > 0 ? size_t(std::snprintf(key, sizeof key, "%" PRId64, i % o.key_space)) : 0;
    while (rd_kafka_produce(rkt, partition, 0, value.data(), value.size(), klen ? key : nullptr,
                            klen, reinterpret_cast<void*>(uintptr_t(i))) == -1) {
      if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL)
        fail(std::string("produce: ") + rd_kafka_err2str(rd_kafka_last_error()));
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  rd_kafka_flush(rk, 60000);
  stop = true;
  poller.join();
  std::vector<int64_t> lat;
  lat.reserve(size_t(total - warm));
  int64_t missing = 0;
  for (int64_t i = warm; i < total; ++i) {
    if (done_ns[size_t(i)] == 0) {
      ++missing;
      continue;
    }
    lat.push_back(done_ns[size_t(i)] - send_ns[size_t(i)].load(std::memory_order_acquire));
  }
  Json j = header(o, o.mock ? "mock" : "ordo");
  j.integer("acks", o.acks)
      .integer("partitions", o.partitions)
      .integer("value_bytes", o.value_size);
  latency_fields(j, lat, o, double(p.last_ns - p.first_counted_ns) / 1e9, p.max_lag_ns, p.late);
  j.integer("errors", s.failed + missing);
  j.print();
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return s.failed ? 1 : 0;
}

// ---- raw request/response over one TCP connection -----------------------------------------

int connect_tcp(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); rc != 0)
    fail("resolve " + host + ": " + gai_strerror(rc));
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0) fail("connect " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail(std::string("write: ") + std::strerror(errno));
    p += w;
    n -= size_t(w);
  }
}

// A request/response protocol whose responses come back in request order.
struct Wire {
  // The request bytes for request number i.
  std::function<std::string(int64_t)> request;
  // Consumes complete responses from the front of buf (which it may keep appending to);
  // returns how many completed. Fails on a bad response.
  std::function<int64_t(std::string&)> responses;
};

// Sends at a fixed rate on one connection and times each response from its write. A second
// thread reads, so sending never waits for a response.
int run_wire_latency(const Options& o, const char* target, int fd, Wire wire) {
  int64_t warm = int64_t(o.warmup * o.rate);
  int64_t total = warm + int64_t(o.duration * o.rate);
  std::vector<std::atomic<int64_t>> send_ns(static_cast<size_t>(total));
  std::vector<int64_t> lat;
  lat.reserve(size_t(total));
  std::thread reader([&] {
    std::string buf;
    char chunk[65536];
    int64_t done = 0;
    while (done < total) {
      ssize_t r = ::read(fd, chunk, sizeof chunk);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        fail(std::string("read: ") + (r == 0 ? "connection closed" : std::strerror(errno)));
      int64_t t = now_ns();
      buf.append(chunk, size_t(r));
      int64_t n = wire.responses(buf);
      for (int64_t k = 0; k < n; ++k, ++done) {
        if (done >= warm) lat.push_back(t - send_ns[size_t(done)].load(std::memory_order_acquire));
      }
    }
  });
  Pacing p = paced(total, warm, o.rate, [&](int64_t i, int64_t t) {
    std::string req = wire.request(i);
    send_ns[size_t(i)].store(t, std::memory_order_release);
    write_all(fd, req.data(), req.size());
  });
  reader.join();
  close(fd);
  Json j = header(o, target);
  latency_fields(j, lat, o, double(p.last_ns - p.first_counted_ns) / 1e9, p.max_lag_ns, p.late);
  j.integer("errors", 0);
  j.print();
  return 0;
}

void put16(std::string& s, int v) {
  s += char((v >> 8) & 0xff);
  s += char(v & 0xff);
}
void put32(std::string& s, int64_t v) {
  for (int sh = 24; sh >= 0; sh -= 8) s += char((v >> sh) & 0xff);
}
int32_t get32(const std::string& s, size_t at) {
  return int32_t((uint32_t(uint8_t(s[at])) << 24) | (uint32_t(uint8_t(s[at + 1])) << 16) |
                 (uint32_t(uint8_t(s[at + 2])) << 8) | uint32_t(uint8_t(s[at + 3])));
}

// ApiVersions v2 (request header v1, empty body; response header v0): the cheapest request
// that goes through the broker's whole request path (decode, dispatch, encode, ordered send).
int run_ping_latency(const Options& o) {
  if (o.port <= 0) fail("ping-latency needs --port");
  int fd = connect_tcp(o.host, o.port);
  auto expected = std::make_shared<int64_t>(0);
  Wire w;
  w.request = [](int64_t i) {
    std::string body;
    put16(body, 18);  // ApiVersions
    put16(body, 2);
    put32(body, int32_t(i & 0x7fffffff));
    const std::string client = "ping";
    put16(body, int(client.size()));
    body += client;
    std::string frame;
    put32(frame, int64_t(body.size()));
    return frame + body;
  };
  w.responses = [expected](std::string& buf) {
    int64_t n = 0;
    size_t at = 0;
    while (buf.size() - at >= 8) {
      int32_t size = get32(buf, at);
      if (size < 4) fail("bad ApiVersions response size");
      if (buf.size() - at < size_t(size) + 4) break;
      int32_t corr = get32(buf, at + 4);
      if (corr != int32_t(*expected & 0x7fffffff))
        fail("ApiVersions response out of order: got correlation id " + std::to_string(corr));
      ++*expected;
      at += size_t(size) + 4;
      ++n;
    }
    buf.erase(0, at);
    return n;
  };
  return run_wire_latency(o, "ordo", fd, std::move(w));
}

// The disk's floor for a durable acknowledgement: append --value-size bytes to a new file in
// --dir and fdatasync, once per tick of --rate (at once when the previous sync ran past the
// tick), and time each write + fdatasync. The file grows with every write, as a log segment
// does with log.preallocate.mode=none.
int run_fdatasync_latency(const Options& o) {
  if (o.dir.empty()) fail("fdatasync-latency needs --dir");
  std::string path = o.dir + "/fdatasync-latency-" + std::to_string(getpid());
  int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) fail("open " + path + ": " + std::strerror(errno));
  std::string value(size_t(std::max(o.value_size, 1)), 'f');
  int64_t warm = int64_t(o.warmup * o.rate);
  int64_t total = warm + int64_t(o.duration * o.rate);
  std::vector<int64_t> lat;
  lat.reserve(size_t(total));
  off_t offset = 0;
  int64_t end_ns = 0, syncs = 0, warm_end = 0;
  double interval = 1e9 / o.rate;
  int64_t start = now_ns(), stop = start + int64_t((o.warmup + o.duration) * 1e9);
  warm_end = start + int64_t(o.warmup * 1e9);
  for (int64_t i = 0; i < total; ++i) {
    int64_t target = start + int64_t(double(i) * interval);
    if (now_ns() < target) sleep_until_ns(target);
    int64_t t = now_ns();
    if (t >= stop) break;
    if (::pwrite(fd, value.data(), value.size(), offset) != ssize_t(value.size()))
      fail(std::string("pwrite: ") + std::strerror(errno));
    if (::fdatasync(fd) != 0) fail(std::string("fdatasync: ") + std::strerror(errno));
    offset += off_t(value.size());
    end_ns = now_ns();
    if (t >= warm_end) {
      lat.push_back(end_ns - t);
      ++syncs;
    }
    // Ticks that passed during the sync are skipped, not made up in a burst.
    int64_t next = int64_t(double(end_ns - start) / interval);
    if (next > i + 1) i = next - 1;
  }
  ::close(fd);
  ::unlink(path.c_str());
  Json j;
  j.str("mode", o.mode).str("target", "disk");
  if (!o.label.empty()) j.str("label", o.label);
  j.integer("value_bytes", o.value_size);
  double secs = double(end_ns - warm_end) / 1e9;
  latency_fields(j, lat, o, secs, 0, 0);
  j.num("syncs_per_s", secs > 0 ? double(syncs) / secs : 0);
  j.integer("errors", 0);
  j.print();
  return 0;
}

#ifdef ORDO_HAVE_HIREDIS
// RESP command bytes, built with hiredis.
std::string resp_command(const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  char* cmd = nullptr;
  long long len = redisFormatCommandArgv(&cmd, int(argv.size()), argv.data(), lens.data());
  if (len < 0) fail("redisFormatCommandArgv failed");
  std::string out(cmd, size_t(len));
  redisFreeCommand(cmd);
  return out;
}

// Counts complete replies with hiredis's reply parser; an error reply fails the run.
Wire redis_wire(std::string command) {
  std::shared_ptr<redisReader> reader(redisReaderCreate(), redisReaderFree);
  Wire w;
  w.request = [command = std::move(command)](int64_t) { return command; };
  w.responses = [reader](std::string& buf) {
    if (redisReaderFeed(reader.get(), buf.data(), buf.size()) != REDIS_OK) fail("redis reader");
    buf.clear();
    int64_t n = 0;
    for (;;) {
      void* reply = nullptr;
      if (redisReaderGetReply(reader.get(), &reply) != REDIS_OK) fail("bad Redis reply");
      if (!reply) break;
      auto* r = static_cast<redisReply*>(reply);
      if (r->type == REDIS_REPLY_ERROR) fail(std::string("Redis error: ") + r->str);
      freeReplyObject(r);
      ++n;
    }
    return n;
  };
  return w;
}

redisContext* redis_connect(const Options& o) {
  if (o.port <= 0) fail("redis modes need --port");
  redisContext* c = redisConnect(o.host.c_str(), o.port);
  if (!c || c->err) fail(std::string("redis connect: ") + (c ? c->errstr : "out of memory"));
  return c;
}

void redis_simple(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  auto* r =
      static_cast<redisReply*>(redisCommandArgv(c, int(argv.size()), argv.data(), lens.data()));
  if (!r) fail(std::string("redis: ") + c->errstr);
  if (r->type == REDIS_REPLY_ERROR) fail(std::string("redis ") + args[0] + ": " + r->str);
  freeReplyObject(r);
}

int64_t redis_xlen(redisContext* c, const std::string& key) {
  auto* r = static_cast<redisReply*>(redisCommand(c, "XLEN %b", key.data(), key.size()));
  if (!r || r->type != REDIS_REPLY_INTEGER) fail("XLEN failed");
  int64_t n = r->integer;
  freeReplyObject(r);
  return n;
}

std::string xadd_command(const Options& o) {
  std::string value(size_t(o.value_size), 'r');
  return resp_command({"XADD", o.topic, "*", "v", value});
}

// Pipelined XADDs: `pipeline` commands per write, and the next write goes out before the
// previous one's replies are read, so Redis always has work queued.
int run_redis_produce(const Options& o) {
  redisContext* c = redis_connect(o);
  redis_simple(c, {"DEL", o.topic});
  const std::string cmd = xadd_command(o);
  std::string chunk;
  for (int i = 0; i < o.pipeline; ++i) chunk += cmd;
  auto flush = [&] {
    int done = 0;
    while (!done) {
      if (redisBufferWrite(c, &done) != REDIS_OK) fail(std::string("redis write: ") + c->errstr);
    }
  };
  auto read_replies = [&](int64_t n) {
    for (int64_t k = 0; k < n; ++k) {
      void* reply = nullptr;
      if (redisGetReply(c, &reply) != REDIS_OK) fail(std::string("redis read: ") + c->errstr);
      auto* r = static_cast<redisReply*>(reply);
      if (r->type == REDIS_REPLY_ERROR) fail(std::string("XADD: ") + r->str);
      freeReplyObject(r);
    }
  };
  double cpu0 = cpu_seconds();
  int64_t start = now_ns();
  int64_t sent = 0, outstanding = 0;
  while (sent < o.messages) {
    int64_t n = std::min<int64_t>(o.pipeline, o.messages - sent);
    if (n == o.pipeline) {
      redisAppendFormattedCommand(c, chunk.data(), chunk.size());
    } else {
      for (int64_t k = 0; k < n; ++k) redisAppendFormattedCommand(c, cmd.data(), cmd.size());
    }
    flush();
    sent += n;
    if (outstanding > 0) read_replies(outstanding);
    outstanding = n;
  }
  read_replies(outstanding);
  double seconds = double(now_ns() - start) / 1e9;
  double cpu = cpu_seconds() - cpu0;
  int64_t len = redis_xlen(c, o.topic);
  redisFree(c);
  Json j = header(o, "redis");
  j.integer("pipeline", o.pipeline);
  throughput_fields(j, o.messages, o.value_size, seconds);
  j.num("client_cpu_s", cpu);
  j.integer("stream_length", len).integer("errors", len == o.messages ? 0 : 1);
  j.print();
  return len == o.messages ? 0 : 1;
}

int run_redis_latency(const Options& o, bool ping) {
  redisContext* c = redis_connect(o);
  if (!ping) redis_simple(c, {"DEL", o.topic});
  redisFree(c);
  int fd = connect_tcp(o.host, o.port);
  return run_wire_latency(o, "redis", fd,
                          redis_wire(ping ? resp_command({"PING"}) : xadd_command(o)));
}
#else
int no_hiredis() {
  fail("built without hiredis (apt-get install libhiredis-dev, reconfigure)");
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // The default 50 us timer slack would add up to half an interval (100 us at 10k/s) to
  // every paced send.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (o.mode == "produce") return run_produce(o);
  if (o.mode == "consume") return run_consume(o);
  if (o.mode == "latency") return run_latency(o);
  if (o.mode == "ping-latency") return run_ping_latency(o);
  if (o.mode == "fdatasync-latency") return run_fdatasync_latency(o);
#ifdef ORDO_HAVE_HIREDIS
  if (o.mode == "redis-produce") return run_redis_produce(o);
  if (o.mode == "redis-latency") return run_redis_latency(o, false);
  if (o.mode == "redis-ping") return run_redis_latency(o, true);
#else
  if (o.mode.rfind("redis-", 0) == 0) return no_hiredis();
#endif
  fail("unknown mode " + o.mode + "\n" + kUsage);
}
