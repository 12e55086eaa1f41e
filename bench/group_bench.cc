// Load generator for the consumer-group benchmark (bench/run-group-bench, `make bench-groups`).
// librdkafka consumers against Ordo or, with --mock, librdkafka's in-process mock cluster.
//
// Modes:
//   join          --rounds times: --members consumers (one handle and one polling thread each,
//                 in this process) subscribe to a --partitions topic in a new group; the time
//                 from the first subscribe call until every member holds an assignment and
//                 together they hold every partition exactly once. Then, with --add K, K more
//                 members subscribe and the same is timed again (the rebalance).
//   commit-sync   one group member commits one partition's offset (the next number each time)
//                 with rd_kafka_commit(async=0) for --duration s after --warmup s: commits/s and
//                 the latency of each call
//   commit-async  the same member commits with rd_kafka_commit(async=1), one partition per call
//                 round-robin over --partitions, keeping --inflight commits outstanding;
//                 completions are counted in the offset_commit_cb (served by rd_kafka_poll)
//
// Prints one JSON object on stdout; progress and errors go to stderr.
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "kafka_bench.h"

namespace {

using namespace ordo_bench;

struct Options {
  std::string mode;
  std::string bootstrap = "127.0.0.1:9092";
  bool mock = false;
  std::string topic = "groups";
  int partitions = 12;
  int members = 3;
  int add = 1;
  int rounds = 10;
  double duration = 5;
  double warmup = 1;
  int inflight = 16;
  double timeout = 60;
  std::string label;
  std::vector<std::pair<std::string, std::string>> extra;  // --set: consumer properties
};

const char* kUsage =
    "usage: group_bench MODE [options]\n"
    "modes: join commit-sync commit-async\n"
    "  --bootstrap HOST:PORT   Kafka bootstrap (default 127.0.0.1:9092)\n"
    "  --mock                  use librdkafka's mock cluster instead (one broker)\n"
    "  --topic NAME            topic to create and subscribe to (default groups)\n"
    "  --partitions P          its partitions (default 12)\n"
    "  --members N             join: members that subscribe at once (default 3)\n"
    "  --add K                 join: members that join the stable group after (default 1; 0: "
    "none)\n"
    "  --rounds R              join: rounds, each with a new group id (default 10)\n"
    "  --duration S            commit modes: seconds measured (default 5)\n"
    "  --warmup S              commit modes: seconds committed first and not counted (default 1)\n"
    "  --inflight W            commit-async: outstanding commits (default 16)\n"
    "  --timeout S             longest wait for a stable group (default 60)\n"
    "  --set NAME=VALUE        extra librdkafka consumer property (repeatable)\n"
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
    else if (a == "--mock")
      o.mock = true;
    else if (a == "--topic")
      o.topic = value();
    else if (a == "--partitions")
      o.partitions = int(number());
    else if (a == "--members")
      o.members = int(number());
    else if (a == "--add")
      o.add = int(number());
    else if (a == "--rounds")
      o.rounds = int(number());
    else if (a == "--duration")
      o.duration = number();
    else if (a == "--warmup")
      o.warmup = number();
    else if (a == "--inflight")
      o.inflight = int(number());
    else if (a == "--timeout")
      o.timeout = number();
    else if (a == "--label")
      o.label = value();
    else if (a == "--set")
      o.extra.push_back(args.name_value());
    else
      args.unknown();
  }
  if (o.partitions < 1 || o.members < 1 || o.add < 0 || o.members + o.add > 1000 || o.rounds < 1 ||
      o.duration <= 0 || o.warmup < 0 || o.inflight < 1 || o.timeout <= 0)
    fail("option out of range");
  return o;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- the cluster --------------------------------------------------------------------------

// Holds the topic's creator and, with --mock, the mock cluster (it lives inside this handle),
// for the whole run. Consumers connect to bootstrap() like to any broker.
class Cluster {
 public:
  explicit Cluster(const Options& o) {
    rd_kafka_conf_t* conf = base_conf(o.bootstrap, o.mock, "ordo-group-bench-admin");
    host_ = new_handle(RD_KAFKA_PRODUCER, conf);
    bootstrap_ = o.mock ? rd_kafka_mock_cluster_bootstraps(rd_kafka_handle_mock_cluster(host_))
                        : o.bootstrap;
    ensure_topic(host_, o.topic, o.mock, o.partitions);
  }
  ~Cluster() { rd_kafka_destroy(host_); }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  const std::string& bootstrap() const { return bootstrap_; }

 private:
  rd_kafka_t* host_ = nullptr;
  std::string bootstrap_;
};

// ---- group state as the members see it -----------------------------------------------------

// What each member was last told to own, updated by the rebalance callbacks (which run on the
// members' polling threads). A phase is stable when the first `expected` members all hold an
// assignment and their assignments cover [0, partitions) exactly once.
class GroupView {
 public:
  GroupView(int partitions, int members_max)
      : partitions_(partitions), owned_(size_t(members_max)), holds_(size_t(members_max)) {}

  // Starts timing a phase in which the first `expected` members must end up stable.
  void begin_phase(int expected) {
    std::lock_guard lock(mu_);
    expected_ = expected;
    stable_ns_ = 0;
    check();
  }

  void assigned(int member, const rd_kafka_topic_partition_list_t* parts) {
    std::lock_guard lock(mu_);
    auto& mine = owned_[size_t(member)];
    mine.clear();
    for (int i = 0; i < parts->cnt; ++i) mine.push_back(parts->elems[i].partition);
    holds_[size_t(member)] = true;
    ++assign_events_;
    check();
  }

  void revoked(int member) {
    std::lock_guard lock(mu_);
    owned_[size_t(member)].clear();
    holds_[size_t(member)] = false;
    ++revoke_events_;
  }

  // The moment the phase became stable, or 0 after timeout_ns.
  int64_t await_stable(int64_t timeout_ns) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::nanoseconds(timeout_ns), [&] { return stable_ns_ != 0; });
    return stable_ns_;
  }

  std::string describe() {
    std::lock_guard lock(mu_);
    std::string s;
    for (int m = 0; m < expected_; ++m) {
      s += "member " + std::to_string(m) + (holds_[size_t(m)] ? ": [" : " (no assignment): [");
      for (int32_t p : owned_[size_t(m)]) s += std::to_string(p) + " ";
      s += "] ";
    }
    return s;
  }

  int64_t assign_events() {
    std::lock_guard lock(mu_);
    return assign_events_;
  }
  int64_t revoke_events() {
    std::lock_guard lock(mu_);
    return revoke_events_;
  }

 private:
  void check() {
    if (stable_ns_ != 0 || expected_ == 0) return;
    std::vector<int> seen(size_t(partitions_), 0);
    for (int m = 0; m < expected_; ++m) {
      if (!holds_[size_t(m)]) return;
      for (int32_t p : owned_[size_t(m)]) {
        if (p < 0 || p >= partitions_ || seen[size_t(p)]++) return;
      }
    }
    if (std::count(seen.begin(), seen.end(), 1) != partitions_) return;
    stable_ns_ = now_ns();
    cv_.notify_all();
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int partitions_;
  int expected_ = 0;
  int64_t stable_ns_ = 0;
  int64_t assign_events_ = 0;
  int64_t revoke_events_ = 0;
  std::vector<std::vector<int32_t>> owned_;
  std::vector<bool> holds_;
};

// ---- a group member -----------------------------------------------------------------------

// One consumer handle with a thread that serves it (rd_kafka_consumer_poll, where rebalance
// callbacks run). Created and connected (metadata fetched) before anything is timed.
class Member {
 public:
  Member(const Options& o, const std::string& bootstrap, const std::string& group, GroupView* view,
         int index)
      : view_(view), index_(index) {
    rd_kafka_conf_t* conf = base_conf(bootstrap, false, "ordo-group-bench");
    set(conf, "group.id", group);
    set(conf, "enable.auto.commit", "false");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "enable.partition.eof", "false");
    for (const auto& [k, v] : o.extra) set(conf, k, v);
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
    rd_kafka_conf_set_opaque(conf, this);
    rk_ = new_handle(RD_KAFKA_CONSUMER, conf);
    await_topic(rk_, o.topic, o.partitions);
    poller_ = std::thread([this] {
      while (!stop_.load(std::memory_order_relaxed)) {
        if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, 50)) rd_kafka_message_destroy(m);
      }
    });
  }
  ~Member() {
    stop_polling();
    rd_kafka_destroy(rk_);
  }
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  rd_kafka_t* handle() const { return rk_; }

  void subscribe(const std::string& topic) {
    rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, topic.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) fail(std::string("subscribe: ") + rd_kafka_err2str(err));
  }

  // Leaves the group (rd_kafka_consumer_close serves the last revocation itself).
  void close() {
    stop_polling();
    if (rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk_))
      std::fprintf(stderr, "consumer_close: %s\n", rd_kafka_err2str(err));
  }

  // offset_commit_cb results, for commit-async (called on whichever thread polls rk_'s main
  // queue: the committing thread's rd_kafka_poll).
  std::atomic<int64_t> commits_done{0};
  std::atomic<int64_t> commit_errors{0};
  std::atomic<int> first_commit_error{0};

 private:
  void stop_polling() {
    stop_ = true;
    if (poller_.joinable()) poller_.join();
  }

  static void rebalance_cb(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<Member*>(opaque);
    if (std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
      fail("the cooperative protocol is not supported by this benchmark");
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      if (rd_kafka_resp_err_t e = rd_kafka_assign(rk, parts))
        fail(std::string("assign: ") + rd_kafka_err2str(e));
      self->view_->assigned(self->index_, parts);
    } else {
      self->view_->revoked(self->index_);
      rd_kafka_assign(rk, nullptr);
    }
  }

  static void commit_cb(rd_kafka_t*, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* offsets, void* opaque) {
    auto* self = static_cast<Member*>(opaque);
    if (!err && offsets) {
      for (int i = 0; i < offsets->cnt && !err; ++i) err = offsets->elems[i].err;
    }
    if (err) {
      int expected = 0;
      self->first_commit_error.compare_exchange_strong(expected, int(err));
      self->commit_errors.fetch_add(1, std::memory_order_relaxed);
    }
    self->commits_done.fetch_add(1, std::memory_order_relaxed);
  }

  GroupView* view_;
  int index_;
  rd_kafka_t* rk_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread poller_;
};

std::string group_name(const std::string& what, int round) {
  return "group-bench-" + std::to_string(getpid()) + "-" + what + "-" + std::to_string(round);
}

void close_all(std::vector<std::unique_ptr<Member>>& members) {
  std::vector<std::thread> closers;
  for (auto& m : members) closers.emplace_back([&m] { m->close(); });
  for (auto& t : closers) t.join();
  members.clear();
}

Json header(const Options& o) {
  Json j;
  j.str("mode", o.mode).str("target", o.mock ? "mock" : "ordo");
  if (!o.label.empty()) j.str("label", o.label);
  return j;
}

// The per-round figures of one measurement and their median, minimum and maximum.
void spread_fields(Json& j, const std::string& prefix, const std::vector<double>& ms) {
  j.nums((prefix + "_ms").c_str(), ms);
  j.num((prefix + "_median_ms").c_str(), median(ms));
  j.num((prefix + "_min_ms").c_str(), ms.empty() ? 0 : *std::min_element(ms.begin(), ms.end()));
  j.num((prefix + "_max_ms").c_str(), ms.empty() ? 0 : *std::max_element(ms.begin(), ms.end()));
}

// ---- join ---------------------------------------------------------------------------------

int run_join(const Options& o) {
  Cluster cluster(o);
  std::vector<double> join_ms, rebalance_ms;
  int64_t timeout_ns = int64_t(o.timeout * 1e9);
  for (int round = 0; round < o.rounds; ++round) {
    GroupView view(o.partitions, o.members + o.add);
    std::string group = group_name("join", round);
    std::vector<std::unique_ptr<Member>> members;
    for (int i = 0; i < o.members; ++i)
      members.push_back(std::make_unique<Member>(o, cluster.bootstrap(), group, &view, i));
    view.begin_phase(o.members);
    int64_t t0 = now_ns();
    for (auto& m : members) m->subscribe(o.topic);
    int64_t stable = view.await_stable(timeout_ns);
    if (!stable) fail("round " + std::to_string(round) + ": no stable group: " + view.describe());
    join_ms.push_back(double(stable - t0) / 1e6);
    std::fprintf(stderr, "round %d: %d members stable after %.1f ms", round, o.members,
                 join_ms.back());
    if (o.add > 0) {
      for (int i = 0; i < o.add; ++i)
        members.push_back(
            std::make_unique<Member>(o, cluster.bootstrap(), group, &view, o.members + i));
      view.begin_phase(o.members + o.add);
      int64_t t1 = now_ns();
      for (int i = 0; i < o.add; ++i) members[size_t(o.members + i)]->subscribe(o.topic);
      int64_t again = view.await_stable(timeout_ns);
      if (!again)
        fail("round " + std::to_string(round) +
             ": no stable group after the new member(s): " + view.describe());
      rebalance_ms.push_back(double(again - t1) / 1e6);
      std::fprintf(stderr, "; +%d stable after %.1f ms", o.add, rebalance_ms.back());
    }
    std::fprintf(stderr, "\n");
    close_all(members);
  }
  Json j = header(o);
  j.integer("partitions", o.partitions)
      .integer("members", o.members)
      .integer("added", o.add)
      .integer("rounds", o.rounds);
  spread_fields(j, "join", join_ms);
  if (o.add > 0) spread_fields(j, "rebalance", rebalance_ms);
  j.integer("errors", 0);
  j.print();
  return 0;
}

// ---- commits ------------------------------------------------------------------------------

// One member of a new group, subscribed and holding every partition.
struct Committer {
  explicit Committer(const Options& o)
      : cluster(o),
        view(o.partitions, 1),
        member(o, cluster.bootstrap(), group_name(o.mode, 0), &view, 0) {
    view.begin_phase(1);
    member.subscribe(o.topic);
    if (!view.await_stable(int64_t(o.timeout * 1e9)))
      fail("the committing consumer got no assignment: " + view.describe());
  }
  Cluster cluster;
  GroupView view;
  Member member;
};

// Reads the committed offsets back (OffsetFetch) and counts partitions where they differ from
// what was committed last.
int64_t check_committed(rd_kafka_t* rk, const std::string& topic,
                        const std::vector<int64_t>& last) {
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(int(last.size()));
  for (size_t p = 0; p < last.size(); ++p)
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), int32_t(p));
  rd_kafka_resp_err_t err = rd_kafka_committed(rk, parts, 10000);
  if (err) fail(std::string("committed: ") + rd_kafka_err2str(err));
  int64_t wrong = 0;
  for (int i = 0; i < parts->cnt; ++i) {
    const auto& e = parts->elems[i];
    if (e.err || e.offset != last[size_t(e.partition)]) {
      std::fprintf(stderr, "partition %d: committed %lld, expected %lld (%s)\n", e.partition,
                   static_cast<long long>(e.offset),
                   static_cast<long long>(last[size_t(e.partition)]), rd_kafka_err2str(e.err));
      ++wrong;
    }
  }
  rd_kafka_topic_partition_list_destroy(parts);
  return wrong;
}

int run_commit_sync(const Options& o) {
  Committer c(o);
  rd_kafka_t* rk = c.member.handle();
  rd_kafka_topic_partition_list_t* one = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(one, o.topic.c_str(), 0);
  std::vector<int64_t> last(size_t(o.partitions), RD_KAFKA_OFFSET_INVALID);
  std::vector<int64_t> lat;
  int64_t errors = 0, offset = 0;
  rd_kafka_resp_err_t first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
  int64_t start = now_ns(), counted_from = start + int64_t(o.warmup * 1e9);
  int64_t end = counted_from + int64_t(o.duration * 1e9);
  for (;;) {
    int64_t t = now_ns();
    if (t >= end) break;
    tp->offset = ++offset;
    rd_kafka_resp_err_t err = rd_kafka_commit(rk, one, 0);
    if (!err) err = tp->err;
    int64_t done = now_ns();
    if (err) {
      if (!errors++) first_error = err;
    } else {
      last[0] = offset;
    }
    if (t >= counted_from) lat.push_back(done - t);
  }
  int64_t wrong = check_committed(rk, o.topic, {last[0]});
  rd_kafka_topic_partition_list_destroy(one);
  std::sort(lat.begin(), lat.end());
  double secs = double(end - counted_from) / 1e9;
  Json j = header(o);
  j.integer("commits", int64_t(lat.size()))
      .num("seconds", secs)
      .num("commits_per_s", double(lat.size()) / secs)
      .num("p50_us", percentile(lat, 50) / 1e3)
      .num("p90_us", percentile(lat, 90) / 1e3)
      .num("p99_us", percentile(lat, 99) / 1e3)
      .num("p999_us", percentile(lat, 99.9) / 1e3)
      .num("max_us", lat.empty() ? 0 : double(lat.back()) / 1e3)
      .integer("commits_total", offset)  // warm-up included
      .integer("errors", errors + wrong);
  if (errors) j.str("first_error", rd_kafka_err2name(first_error));
  j.print();
  return errors + wrong ? 1 : 0;
}

int run_commit_async(const Options& o) {
  Committer c(o);
  Member& m = c.member;
  rd_kafka_t* rk = m.handle();
  rd_kafka_topic_partition_list_t* one = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t* tp = rd_kafka_topic_partition_list_add(one, o.topic.c_str(), 0);
  std::vector<int64_t> last(size_t(o.partitions), RD_KAFKA_OFFSET_INVALID);
  int64_t sent = 0, done_at_start = -1, done_at_end = 0, max_outstanding = 0;
  int64_t start = now_ns(), counted_from = start + int64_t(o.warmup * 1e9);
  int64_t end = counted_from + int64_t(o.duration * 1e9);
  for (;;) {
    int64_t t = now_ns();
    int64_t done = m.commits_done.load(std::memory_order_relaxed);
    if (done_at_start < 0 && t >= counted_from) done_at_start = done;
    if (t >= end) {
      done_at_end = done;
      break;
    }
    while (sent - m.commits_done.load(std::memory_order_relaxed) < o.inflight) {
      int32_t p = int32_t(sent % o.partitions);
      tp->partition = p;
      tp->offset = sent + 1;
      if (rd_kafka_resp_err_t err = rd_kafka_commit(rk, one, 1))
        fail(std::string("commit: ") + rd_kafka_err2str(err));
      last[size_t(p)] = sent + 1;
      ++sent;
    }
    max_outstanding = std::max(max_outstanding, sent - m.commits_done.load());
    rd_kafka_poll(rk, 100);  // serves offset_commit_cb
  }
  double secs = double(now_ns() - counted_from) / 1e9;
  int64_t drain_until = now_ns() + int64_t(o.timeout * 1e9);
  while (m.commits_done.load() < sent && now_ns() < drain_until) rd_kafka_poll(rk, 100);
  int64_t lost = sent - m.commits_done.load();
  if (lost) std::fprintf(stderr, "%lld commits never completed\n", static_cast<long long>(lost));
  // The last commit of each partition is the one with the highest offset, and commits of one
  // partition are applied in order, so that is what must be stored.
  int64_t wrong = lost ? 0 : check_committed(rk, o.topic, last);
  rd_kafka_topic_partition_list_destroy(one);
  int64_t counted = done_at_end - std::max<int64_t>(done_at_start, 0);
  int64_t errors = m.commit_errors.load() + lost + wrong;
  Json j = header(o);
  j.integer("partitions", o.partitions)
      .integer("inflight", o.inflight)
      .integer("commits", counted)
      .num("seconds", secs)
      .num("commits_per_s", double(counted) / secs)
      .integer("commits_total", sent)  // warm-up and drain included
      .integer("max_outstanding", max_outstanding)
      .integer("errors", errors);
  if (m.first_commit_error.load())
    j.str("first_error",
          rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(m.first_commit_error.load())));
  j.print();
  return errors ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o = parse(argc, argv);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  if (o.mode == "join") return run_join(o);
  if (o.mode == "commit-sync") return run_commit_sync(o);
  if (o.mode == "commit-async") return run_commit_async(o);
  fail("unknown mode " + o.mode + "\n" + kUsage);
}
