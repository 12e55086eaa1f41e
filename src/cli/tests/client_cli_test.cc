// The client commands (`ordo topic`, `ordo group`, `ordo produce`, `ordo consume`) against a
// real `ordo serve`, each run as a user would run it: a shell command line with stdin, stdout
// and stderr, bounded by timeout(1). The group tests make their own group clients with
// librdkafka (a subscribed member, commits, reading committed offsets back).

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "base/file.h"
#include "storage/tests/test_util.h"

namespace ordo {
namespace {

constexpr int kCommandTimeoutS = 60;
constexpr int kBrokerStartMs = 20'000;
constexpr int kBrokerStopMs = 30'000;

struct CommandRun {
  int exit_code;
  std::string out;
  std::string err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& s, const std::string& line) {
  for (const auto& l : lines_of(s)) {
    if (l == line) return true;
  }
  return false;
}

// One broker for the whole suite; each test uses its own topics.
class ClientCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new storage::testing::TempDir();
    log_path_ = tmp_->path() + "/broker.log";
    std::string data = tmp_->path() + "/data";
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      int fd = ::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      // A new group's first generation starts at once instead of after 3 s.
      ::execl(ORDO_BIN, ORDO_BIN, "serve", "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
              "--admin-listen", "127.0.0.1:0", "--set", "group.initial.rebalance.delay.ms=0",
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    std::regex listening("listening on 127\\.0\\.0\\.1:(\\d+)");
    for (int waited_ms = 0; waited_ms < kBrokerStartMs; waited_ms += 10) {
      std::smatch m;
      std::string log = slurp(log_path_);
      if (std::regex_search(log, m, listening)) {
        bootstrap_ = "127.0.0.1:" + m[1].str();
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "broker exited early:\n" << log;
      }
      ::usleep(10'000);
    }
    FAIL() << "broker did not start within " << kBrokerStartMs << " ms:\n" << slurp(log_path_);
  }

  static void TearDownTestSuite() {
    if (pid_ > 0) {
      EXPECT_EQ(::kill(pid_, SIGTERM), 0);
      int status = 0;
      pid_t got = 0;
      for (int waited_ms = 0; waited_ms < kBrokerStopMs && got == 0; waited_ms += 10) {
        got = ::waitpid(pid_, &status, WNOHANG);
        if (got == 0) ::usleep(10'000);
      }
      if (got == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        ADD_FAILURE() << "broker ignored SIGTERM for " << kBrokerStopMs << " ms";
      } else {
        EXPECT_TRUE(WIFEXITED(status));
        EXPECT_EQ(WEXITSTATUS(status), 0) << slurp(log_path_);
      }
      std::string log = slurp(log_path_);
      // No command sends a request the broker does not support (the broker closes the
      // connection of any such request, and logs it).
      EXPECT_EQ(log.find("is not supported"), std::string::npos) << log;
      EXPECT_NE(log.find("closed cleanly"), std::string::npos) << log;
      pid_ = -1;
    }
    delete tmp_;
    tmp_ = nullptr;
  }

  void SetUp() override { ASSERT_FALSE(bootstrap_.empty()) << "no broker"; }

  // Runs `ordo -b <broker> <args>` through the shell with `input` on stdin. `prefix` goes
  // before the command (environment assignments); with `with_bootstrap` false no -b is given.
  CommandRun ordo(const std::string& args, const std::string& input = "",
                  const std::string& prefix = "", bool with_bootstrap = true) {
    int n = ++runs_;
    std::string base = tmp_->path() + "/run" + std::to_string(n);
    {
      std::ofstream in(base + ".in", std::ios::binary);
      in << input;
    }
    std::string cmd = prefix + " timeout -k 5 " + std::to_string(kCommandTimeoutS) + " " +
                      ORDO_BIN + (with_bootstrap ? " -b " + bootstrap_ : "") + " " + args + " < " +
                      base + ".in > " + base + ".out 2> " + base + ".err";
    int status = std::system(cmd.c_str());
    CommandRun r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(base + ".out"),
                 slurp(base + ".err")};
    EXPECT_NE(r.exit_code, 124) << "timed out: " << cmd;
    return r;
  }

  // Runs a command that must succeed; returns its stdout.
  std::string ok(const std::string& args, const std::string& input = "") {
    CommandRun r = ordo(args, input);
    EXPECT_EQ(r.exit_code, 0) << args << "\nstderr: " << r.err;
    return r.out;
  }

  static inline storage::testing::TempDir* tmp_ = nullptr;
  static inline std::string log_path_;
  static inline std::string bootstrap_;
  static inline pid_t pid_ = -1;
  static inline int runs_ = 0;
};

std::string numbered(const std::string& prefix, int from, int to) {
  std::string out;
  for (int i = from; i < to; ++i) out += prefix + std::to_string(i) + "\n";
  return out;
}

TEST_F(ClientCli, TopicCreateListDescribeAlterDelete) {
  EXPECT_EQ(ok("topic create orders --partitions 3 --config retention.ms=3600000"),
            "created topic orders\n");
  CommandRun again = ordo("topic create orders");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("TOPIC_ALREADY_EXISTS"), std::string::npos) << again.err;
  CommandRun bad = ordo("topic create other --config no.such.config=1");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("INVALID_CONFIG"), std::string::npos) << bad.err;

  EXPECT_TRUE(has_line(ok("topic list"), "orders"));

  std::string d = ok("topic describe orders");
  EXPECT_NE(d.find("Topic: orders\tPartitions: 3\tReplicationFactor: 1\n"), std::string::npos) << d;
  for (int p = 0; p < 3; ++p) {
    std::regex line("\tPartition: " + std::to_string(p) +
                    "\tLeader: \\d+\tReplicas: \\d+\tIsr: \\d+\tStartOffset: 0\tEndOffset: 0\n");
    EXPECT_TRUE(std::regex_search(d, line)) << d;
  }
  EXPECT_NE(d.find("\tretention.ms=3600000\t(topic)\n"), std::string::npos) << d;
  EXPECT_TRUE(std::regex_search(d, std::regex("\tsegment.bytes=\\d+\t\\(default\\)\n"))) << d;

  // A config change keeps the other configs set on the topic.
  EXPECT_EQ(ok("topic alter orders --config segment.bytes=1048576"), "altered topic orders\n");
  d = ok("topic describe orders");
  EXPECT_NE(d.find("\tretention.ms=3600000\t(topic)\n"), std::string::npos) << d;
  EXPECT_NE(d.find("\tsegment.bytes=1048576\t(topic)\n"), std::string::npos) << d;
  ok("topic alter orders --delete-config retention.ms");
  d = ok("topic describe orders");
  EXPECT_EQ(d.find("retention.ms=3600000"), std::string::npos) << d;
  EXPECT_TRUE(std::regex_search(d, std::regex("\tretention.ms=[-0-9]+\t\\(default\\)\n"))) << d;
  EXPECT_NE(d.find("\tsegment.bytes=1048576\t(topic)\n"), std::string::npos) << d;

  ok("topic alter orders --partitions 5");
  d = ok("topic describe orders");
  EXPECT_NE(d.find("Partitions: 5"), std::string::npos) << d;
  EXPECT_NE(d.find("\tPartition: 4\t"), std::string::npos) << d;
  CommandRun shrink = ordo("topic alter orders --partitions 2");
  EXPECT_EQ(shrink.exit_code, 1);
  EXPECT_NE(shrink.err.find("INVALID_PARTITIONS"), std::string::npos) << shrink.err;

  EXPECT_EQ(ok("topic delete orders"), "deleted topic orders\n");
  EXPECT_FALSE(has_line(ok("topic list"), "orders"));
  CommandRun gone = ordo("topic describe orders");
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_NE(gone.err.find("topic 'orders' does not exist"), std::string::npos) << gone.err;
  CommandRun gone_again = ordo("topic delete orders");
  EXPECT_EQ(gone_again.exit_code, 1);
  EXPECT_NE(gone_again.err.find("UNKNOWN_TOPIC_OR_PART"), std::string::npos) << gone_again.err;
}

TEST_F(ClientCli, ProduceThenConsumeWithKeysHeadersAndFormat) {
  ok("topic create events --partitions 1");
  // Every 100th line has no separator: no key.
  std::string input, expected;
  for (int i = 0; i < 1000; ++i) {
    std::string value = "value " + std::to_string(i) + "\twith tab";
    if (i % 100 == 99) {
      input += value + "\n";
      expected += "events 0 " + std::to_string(i) + " [] " + value + " [source=cli,empty=] -1 " +
                  std::to_string(value.size()) + "\n";
    } else {
      std::string key = "key-" + std::to_string(i % 7);
      input += key + "::" + value + "\n";
      expected += "events 0 " + std::to_string(i) + " [" + key + "] " + value +
                  " [source=cli,empty=] " + std::to_string(key.size()) + " " +
                  std::to_string(value.size()) + "\n";
    }
  }
  CommandRun p = ordo("produce -t events -K :: -H source=cli -H empty=", input);
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(p.err, "1000 messages produced\n");
  EXPECT_EQ(p.out, "");

  std::string out = ok(R"(consume -t events -e -f '%t %p %o [%k] %s [%h] %K %S\n')");
  EXPECT_EQ(out, expected);
  // The default format is the value and a newline; "%%" is a percent sign.
  out = ok(R"(consume -t events -e -c 2 -f '100%% %s\n')");
  EXPECT_EQ(out, "100% value 0\twith tab\n100% value 1\twith tab\n");
  EXPECT_EQ(ok("consume -t events --exit-at-end --count 1"), "value 0\twith tab\n");
  EXPECT_NE(ok("topic describe events").find("StartOffset: 0\tEndOffset: 1000\n"),
            std::string::npos);
}

TEST_F(ClientCli, ConsumeFromOffsetTailEndAndCount) {
  ok("topic create seq --partitions 1");
  EXPECT_EQ(ordo("produce -t seq", numbered("m", 0, 100)).exit_code, 0);
  EXPECT_EQ(ok("consume -t seq --from 90 -e"), numbered("m", 90, 100));
  EXPECT_EQ(ok("consume -t seq -o 0 -e"), numbered("m", 0, 100));
  EXPECT_EQ(ok("consume -t seq --from -3 -e"), numbered("m", 97, 100));
  EXPECT_EQ(ok("consume -t seq --from end -e"), "");
  EXPECT_EQ(ok("consume -t seq --from beginning -e -c 5"), numbered("m", 0, 5));
  // --count alone: stops after that many, without waiting for the end.
  EXPECT_EQ(ok("consume -t seq --from 42 -c 3"), numbered("m", 42, 45));
  CommandRun past = ordo("consume -t seq --from 500 -e");
  EXPECT_EQ(past.exit_code, 1);
  EXPECT_NE(past.err.find("offset 500 is outside seq [0]: offsets [0, 100)"), std::string::npos)
      << past.err;
  CommandRun missing = ordo("consume -t nosuchtopic -e");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("topic 'nosuchtopic' does not exist"), std::string::npos)
      << missing.err;
  CommandRun bad_format = ordo("consume -t seq -e -f '%x'");
  EXPECT_EQ(bad_format.exit_code, 1);
  EXPECT_NE(bad_format.err.find("unknown code %x"), std::string::npos) << bad_format.err;
}

TEST_F(ClientCli, ConsumeFromTimestamp) {
  ok("topic create times --partitions 1");
  EXPECT_EQ(ordo("produce -t times", numbered("a", 0, 50)).exit_code, 0);
  ::usleep(50'000);  // the second run's timestamps are later than every one of the first
  EXPECT_EQ(ordo("produce -t times", numbered("b", 0, 50)).exit_code, 0);
  auto all = lines_of(ok(R"(consume -t times -e -f '%o %T %s\n')"));
  ASSERT_EQ(all.size(), 100u);
  // "offset timestamp value"
  auto ts_of = [&](size_t i) { return std::stoll(all[i].substr(all[i].find(' ') + 1)); };
  int64_t first_b = ts_of(50);
  EXPECT_LT(ts_of(49), first_b);
  EXPECT_EQ(ok("consume -t times -e --from @" + std::to_string(first_b)), numbered("b", 0, 50));
  // A timestamp inside the second run: from the first message at or after it.
  int64_t mid = ts_of(75);
  size_t first = 50;
  while (ts_of(first) < mid) ++first;
  EXPECT_EQ(ok("consume -t times -e --from @" + std::to_string(mid)),
            numbered("b", int(first - 50), 50));
  // After every message: nothing.
  EXPECT_EQ(ok("consume -t times -e --from @" + std::to_string(ts_of(99) + 60'000)), "");
}

TEST_F(ClientCli, ProduceToAPartitionAndByKey) {
  ok("topic create parts --partitions 3");
  CommandRun p = ordo("produce -t parts -p 2", numbered("p2-", 0, 10));
  EXPECT_EQ(p.exit_code, 0) << p.err;
  EXPECT_EQ(ok("consume -t parts -p 2 -e"), numbered("p2-", 0, 10));
  EXPECT_EQ(ok("consume -t parts -p 0 -p 1 -e"), "");
  std::string d = ok("topic describe parts");
  EXPECT_TRUE(std::regex_search(d, std::regex("\tPartition: 2\t.*\tEndOffset: 10\n"))) << d;

  // The same key always lands in the same partition.
  std::string input;
  for (int i = 0; i < 300; ++i)
    input += "k" + std::to_string(i % 10) + "=" + std::to_string(i) + "\n";
  EXPECT_EQ(ordo("produce -t parts -K =", input).exit_code, 0);
  auto lines = lines_of(ok(R"(consume -t parts -e -f '%p %k\n')"));
  EXPECT_EQ(lines.size(), 310u);
  std::map<std::string, std::set<std::string>> partitions_of;
  for (const auto& l : lines) {
    auto sp = l.find(' ');
    partitions_of[l.substr(sp + 1)].insert(l.substr(0, sp));
  }
  EXPECT_EQ(partitions_of.size(), 11u);  // 10 keys and the empty key
  for (const auto& [k, ps] : partitions_of) EXPECT_EQ(ps.size(), 1u) << k;

  CommandRun bad = ordo("produce -t parts -p 7", numbered("x", 0, 4));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("_UNKNOWN_PARTITION"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("0 messages produced, 4 failed"), std::string::npos) << bad.err;
}

TEST_F(ClientCli, CompressionAndAcks) {
  ok("topic create codecs --partitions 1");
  std::string expected;
  for (std::string codec : {"none", "gzip", "snappy", "lz4", "zstd"}) {
    std::string lines = numbered(codec + "-", 0, 200);
    CommandRun p = ordo("produce -t codecs --acks all --compression " + codec, lines);
    EXPECT_EQ(p.exit_code, 0) << codec << ": " << p.err;
    expected += lines;
  }
  for (std::string acks : {"0", "1"}) {
    std::string lines = numbered("acks" + acks + "-", 0, 10);
    EXPECT_EQ(ordo("produce -t codecs --acks " + acks, lines).exit_code, 0);
    expected += lines;
  }
  EXPECT_EQ(ok("consume -t codecs -e"), expected);
}

TEST_F(ClientCli, BootstrapFromEnvironmentOrAfterTheCommand) {
  ok("topic create envtopic --partitions 1");
  CommandRun env = ordo("topic list", "", "ORDO_BOOTSTRAP=" + bootstrap_, false);
  EXPECT_EQ(env.exit_code, 0) << env.err;
  EXPECT_TRUE(has_line(env.out, "envtopic"));
  CommandRun after = ordo("topic list -b " + bootstrap_ + " -X client.id=test-cli", "", "", false);
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_TRUE(has_line(after.out, "envtopic"));
  CommandRun bad_x = ordo("topic list -X no.such.property=1");
  EXPECT_EQ(bad_x.exit_code, 1);
  EXPECT_NE(bad_x.err.find("no.such.property"), std::string::npos) << bad_x.err;
}

TEST_F(ClientCli, UnreachableClusterFailsWithinTheTimeout) {
  CommandRun r = ordo("-b 127.0.0.1:1 topic list", "", "", false);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("metadata from 127.0.0.1:1"), std::string::npos) << r.err;
}

// ---- consumer groups ----

constexpr int kGroupWaitMs = 30'000;

using Offsets = std::map<int32_t, int64_t>;  // partition -> committed offset

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Kafka = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
struct PartitionsDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using Partitions = std::unique_ptr<rd_kafka_topic_partition_list_t, PartitionsDeleter>;

// A high-level consumer of `group` that commits nothing by itself.
Kafka group_consumer(const std::string& bootstrap, const std::string& group,
                     const std::string& client_id) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (auto [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"bootstrap.servers", bootstrap},
                                                        {"group.id", group},
                                                        {"client.id", client_id},
                                                        {"enable.auto.commit", "false"},
                                                        {"auto.offset.reset", "earliest"},
                                                        {"session.timeout.ms", "6000"},
                                                        {"heartbeat.interval.ms", "500"}}) {
    EXPECT_EQ(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)), RD_KAFKA_CONF_OK)
        << err;
  }
  Kafka rk(rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)));
  EXPECT_TRUE(rk) << err;
  if (!rk) rd_kafka_conf_destroy(conf);
  if (rk) rd_kafka_poll_set_consumer(rk.get());
  return rk;
}

Partitions partition_list(const std::string& topic, const Offsets& offsets) {
  Partitions l(rd_kafka_topic_partition_list_new(int(offsets.size())));
  for (const auto& [p, o] : offsets)
    rd_kafka_topic_partition_list_add(l.get(), topic.c_str(), p)->offset = o;
  return l;
}

// Commits offsets for the group the way a standalone consumer does (no membership).
void commit(const std::string& bootstrap, const std::string& group, const std::string& topic,
            const Offsets& offsets) {
  Kafka rk = group_consumer(bootstrap, group, "committer");
  ASSERT_TRUE(rk);
  Partitions l = partition_list(topic, offsets);
  ASSERT_EQ(rd_kafka_commit(rk.get(), l.get(), 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_consumer_close(rk.get());
}

// The group's committed offsets of these partitions, read back from the broker (OffsetFetch);
// a partition without one is left out.
Offsets committed(const std::string& bootstrap, const std::string& group, const std::string& topic,
                  const std::vector<int32_t>& partitions) {
  Kafka rk = group_consumer(bootstrap, group, "reader");
  Offsets out;
  if (!rk) return out;
  Offsets wanted;
  for (int32_t p : partitions) wanted[p] = RD_KAFKA_OFFSET_INVALID;
  Partitions l = partition_list(topic, wanted);
  EXPECT_EQ(rd_kafka_committed(rk.get(), l.get(), kGroupWaitMs), RD_KAFKA_RESP_ERR_NO_ERROR);
  for (int i = 0; i < l->cnt; ++i) {
    EXPECT_EQ(l->elems[i].err, RD_KAFKA_RESP_ERR_NO_ERROR);
    if (l->elems[i].offset >= 0) out[l->elems[i].partition] = l->elems[i].offset;
  }
  rd_kafka_consumer_close(rk.get());
  return out;
}

// A member subscribed to `topic`; polls until the group has given it partitions. librdkafka
// heartbeats from its own thread, so the member stays in the group between polls.
class Member {
 public:
  Member(const std::string& bootstrap, const std::string& group, const std::string& topic)
      : rk_(group_consumer(bootstrap, group, "member-1")) {
    if (!rk_) return;
    Partitions sub(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(sub.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
    EXPECT_EQ(rd_kafka_subscribe(rk_.get(), sub.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  ~Member() { leave(); }

  bool wait_assigned() {
    for (int waited_ms = 0; rk_ && waited_ms < kGroupWaitMs; waited_ms += 100) {
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), 100)) {
        rd_kafka_message_destroy(m);
      }
      rd_kafka_topic_partition_list_t* a = nullptr;
      if (rd_kafka_assignment(rk_.get(), &a) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        Partitions owned(a);
        if (owned->cnt > 0) return true;
      }
    }
    return false;
  }

  // LeaveGroup: the group becomes Empty at once.
  void leave() {
    if (rk_) rd_kafka_consumer_close(rk_.get());
    rk_.reset();
  }

 private:
  Kafka rk_;
};

// The whitespace-separated words of each line of a table (the "-" cells included).
std::vector<std::vector<std::string>> table_rows(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& line : lines_of(out)) {
    std::stringstream ss(line);
    std::vector<std::string> words;
    for (std::string w; ss >> w;) words.push_back(w);
    rows.push_back(std::move(words));
  }
  return rows;
}

bool has_row(const std::string& out, const std::vector<std::string>& row) {
  for (const auto& r : table_rows(out)) {
    if (r == row) return true;
  }
  return false;
}

// The row of the offsets table for one partition of describe's output.
std::vector<std::string> offsets_row(const std::string& out, const std::string& topic,
                                     int32_t partition) {
  for (const auto& r : table_rows(out)) {
    if (r.size() == 8 && r[0] == topic && r[1] == std::to_string(partition)) return r;
  }
  return {};
}

TEST_F(ClientCli, GroupListDescribeShowCommitsLagAndMembers) {
  ok("topic create lagged --partitions 2");
  ASSERT_EQ(ordo("produce -t lagged -p 0", numbered("a", 0, 10)).exit_code, 0);
  ASSERT_EQ(ordo("produce -t lagged -p 1", numbered("b", 0, 4)).exit_code, 0);
  commit(bootstrap_, "lag-app", "lagged", {{0, 7}});

  // A group that only committed has no protocol type.
  EXPECT_TRUE(has_row(ok("group list"), {"lag-app", "Empty", "-"}));
  std::string d = ok("group describe lag-app");
  EXPECT_NE(d.find("No active members.\n"), std::string::npos) << d;
  EXPECT_EQ(offsets_row(d, "lagged", 0),
            (std::vector<std::string>{"lagged", "0", "7", "10", "3", "-", "-", "-"}))
      << d;
  EXPECT_EQ(offsets_row(d, "lagged", 1), std::vector<std::string>{}) << d;

  {
    Member member(bootstrap_, "lag-app", "lagged");
    ASSERT_TRUE(member.wait_assigned());
    EXPECT_TRUE(has_row(ok("group list"), {"lag-app", "Stable", "consumer"}));
    d = ok("group describe lag-app");
    auto rows = table_rows(d);
    ASSERT_GE(rows.size(), 2u) << d;
    EXPECT_EQ(rows[0], (std::vector<std::string>{"GROUP", "COORDINATOR", "(ID)", "PROTOCOL-TYPE",
                                                 "ASSIGNMENT-STRATEGY", "STATE", "#MEMBERS"}));
    ASSERT_EQ(rows[1].size(), 7u) << d;
    EXPECT_EQ(rows[1][0], "lag-app");
    EXPECT_EQ(rows[1][3], "consumer");
    EXPECT_EQ(rows[1][4], "range");  // librdkafka's default assignor comes first
    EXPECT_EQ(rows[1][5], "Stable");
    EXPECT_EQ(rows[1][6], "1");
    // The member, with the partitions decoded from its assignment.
    std::regex member_line(
        "\n(member-1-[^ ]+) +- +member-1 +/127\\.0\\.0\\.1 +2 +lagged\\(0,1\\)\n");
    std::smatch m;
    ASSERT_TRUE(std::regex_search(d, m, member_line)) << d;
    std::string member_id = m[1].str();
    EXPECT_EQ(offsets_row(d, "lagged", 0),
              (std::vector<std::string>{"lagged", "0", "7", "10", "3", member_id, "/127.0.0.1",
                                        "member-1"}))
        << d;
    // Assigned without a commit: no current offset and no lag.
    EXPECT_EQ(offsets_row(d, "lagged", 1),
              (std::vector<std::string>{"lagged", "1", "-", "4", "-", member_id, "/127.0.0.1",
                                        "member-1"}))
        << d;

    // An active member: no reset, no delete; a dry run still shows the plan.
    CommandRun reset = ordo("group reset-offsets lag-app --topic lagged --to-latest --execute");
    EXPECT_EQ(reset.exit_code, 1);
    EXPECT_NE(reset.err.find("group 'lag-app' is Stable with 1 active member(s)"),
              std::string::npos)
        << reset.err;
    EXPECT_EQ(reset.out, "");
    CommandRun dry = ordo("group reset-offsets lag-app --topic lagged --to-latest");
    EXPECT_EQ(dry.exit_code, 0) << dry.err;
    EXPECT_TRUE(has_row(dry.out, {"lagged", "0", "7", "10"})) << dry.out;
    EXPECT_NE(dry.err.find("--execute is refused"), std::string::npos) << dry.err;
    CommandRun del = ordo("group delete lag-app");
    EXPECT_EQ(del.exit_code, 1);
    EXPECT_NE(del.err.find("NON_EMPTY_GROUP"), std::string::npos) << del.err;
    EXPECT_EQ(committed(bootstrap_, "lag-app", "lagged", {0, 1}), (Offsets{{0, 7}}));

    member.leave();
    d = ok("group describe lag-app");
    EXPECT_NE(d.find("No active members.\n"), std::string::npos) << d;
    EXPECT_TRUE(has_row(ok("group list"), {"lag-app", "Empty", "consumer"}));
  }

  CommandRun unknown = ordo("group describe no-such-group");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.err, "ordo: group 'no-such-group' does not exist\n");
}

TEST_F(ClientCli, GroupDelete) {
  ok("topic create deleted --partitions 1");
  ASSERT_EQ(ordo("produce -t deleted", numbered("d", 0, 5)).exit_code, 0);
  commit(bootstrap_, "doomed-1", "deleted", {{0, 3}});
  commit(bootstrap_, "doomed-2", "deleted", {{0, 4}});
  EXPECT_EQ(ok("group delete doomed-1"), "deleted group doomed-1\n");
  EXPECT_FALSE(has_row(ok("group list"), {"doomed-1", "Empty", "-"}));
  EXPECT_EQ(committed(bootstrap_, "doomed-1", "deleted", {0}), Offsets{});

  CommandRun unknown = ordo("group delete no-such-group");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(unknown.out, "");
  EXPECT_NE(unknown.err.find("delete group 'no-such-group': "), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("GROUP_ID_NOT_FOUND"), std::string::npos) << unknown.err;

  // Several at once: each result is printed, and one failure fails the command.
  CommandRun mixed = ordo("group delete doomed-2 doomed-1");
  EXPECT_EQ(mixed.exit_code, 1);
  EXPECT_EQ(mixed.out, "deleted group doomed-2\n");
  EXPECT_NE(mixed.err.find("delete group 'doomed-1': "), std::string::npos) << mixed.err;
  EXPECT_EQ(committed(bootstrap_, "doomed-2", "deleted", {0}), Offsets{});
}

// "2024-05-01T12:30:00.123Z" for ms since the epoch.
std::string iso_utc(int64_t ms) {
  time_t s = time_t(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%03dZ", buf, int(ms % 1000));
  return out;
}

TEST_F(ClientCli, GroupResetOffsets) {
  ok("topic create rewind --partitions 2");
  ASSERT_EQ(ordo("produce -t rewind -p 0", numbered("a", 0, 20)).exit_code, 0);
  ASSERT_EQ(ordo("produce -t rewind -p 1", numbered("a", 0, 20)).exit_code, 0);
  ::usleep(50'000);  // the second batch's timestamps are later than every one of the first
  ASSERT_EQ(ordo("produce -t rewind -p 0", numbered("b", 0, 10)).exit_code, 0);
  // Offsets: partition 0 [0, 30) (the second batch from 20), partition 1 [0, 20).
  const std::string g = "group reset-offsets rewinder ";
  auto now = [&] { return committed(bootstrap_, "rewinder", "rewind", {0, 1}); };
  commit(bootstrap_, "rewinder", "rewind", {{0, 10}, {1, 5}});

  // Without --execute: the plan, and nothing changes.
  CommandRun dry = ordo(g + "--topic rewind --to-earliest");
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_EQ(dry.out,
            "TOPIC   PARTITION  CURRENT-OFFSET  NEW-OFFSET\n"
            "rewind  0          10              0\n"
            "rewind  1          5               0\n");
  EXPECT_NE(dry.err.find("dry run, nothing changed"), std::string::npos) << dry.err;
  EXPECT_EQ(now(), (Offsets{{0, 10}, {1, 5}}));

  EXPECT_EQ(ok(g + "--topic rewind --to-earliest --execute"),
            "TOPIC   PARTITION  CURRENT-OFFSET  NEW-OFFSET\n"
            "rewind  0          10              0\n"
            "rewind  1          5               0\n");
  EXPECT_EQ(now(), (Offsets{{0, 0}, {1, 0}}));
  ok(g + "--topic rewind --to-latest --execute");
  EXPECT_EQ(now(), (Offsets{{0, 30}, {1, 20}}));
  // One partition only; the other keeps its offset.
  ok(g + "--topic rewind:0 --to-offset 12 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 12}, {1, 20}}));
  // Outside the log: kept within [start, end].
  ok(g + "--topic rewind:1 --to-offset 500 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 12}, {1, 20}}));
  ok(g + "--topic rewind:0,1 --to-offset -3 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 0}, {1, 0}}));
  ok(g + "--topic rewind --to-offset 8 --execute");
  ok(g + "--topic rewind --shift-by -5 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 3}, {1, 3}}));
  ok(g + "--all-topics --shift-by 15 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 18}, {1, 18}}));
  ok(g + "--topic rewind --shift-by 5 --execute");  // clamped at the end of partition 1
  EXPECT_EQ(now(), (Offsets{{0, 23}, {1, 20}}));
  ok(g + "--topic rewind --shift-by -100 --execute");  // clamped at the start
  EXPECT_EQ(now(), (Offsets{{0, 0}, {1, 0}}));

  // To a time: the first message at or after it; the end where there is none.
  auto lines = lines_of(ok(R"(consume -t rewind -p 0 -e -f '%o %T\n')"));
  ASSERT_EQ(lines.size(), 30u);
  auto ts_of = [&](size_t i) { return std::stoll(lines[i].substr(lines[i].find(' ') + 1)); };
  ASSERT_LT(ts_of(19), ts_of(20));
  ok(g + "--topic rewind --to-datetime " + iso_utc(ts_of(20)) + " --execute");
  EXPECT_EQ(now(), (Offsets{{0, 20}, {1, 20}}));
  ok(g + "--topic rewind --to-datetime " + iso_utc(ts_of(0) - 60'000) + " --execute");
  EXPECT_EQ(now(), (Offsets{{0, 0}, {1, 0}}));
  // The same instant in another zone.
  ok(g + "--topic rewind:0 --to-datetime 2099-01-01T02:00:00+02:00 --execute");
  EXPECT_EQ(now(), (Offsets{{0, 30}, {1, 0}}));

  // Shifting a partition without a commit is an error, like Kafka's tool.
  commit(bootstrap_, "half", "rewind", {{0, 4}});
  CommandRun shift = ordo("group reset-offsets half --topic rewind --shift-by 1 --execute");
  EXPECT_EQ(shift.exit_code, 1);
  EXPECT_NE(shift.err.find("cannot shift rewind [1]: group 'half' has no committed offset there"),
            std::string::npos)
      << shift.err;
  EXPECT_EQ(committed(bootstrap_, "half", "rewind", {0, 1}), (Offsets{{0, 4}}));

  // Bad input fails before anything is sent.
  for (std::string bad :
       {"--topic rewind:7 --to-earliest", "--topic nosuchtopic --to-latest",
        "--topic rewind --to-datetime yesterday", "--to-earliest", "--topic rewind"}) {
    CommandRun r = ordo(g + bad + " --execute");
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_FALSE(r.err.empty()) << bad;
  }
  EXPECT_NE(ordo(g + "--topic rewind --to-earliest --to-latest").exit_code, 0);
  EXPECT_EQ(now(), (Offsets{{0, 30}, {1, 0}}));
}

}  // namespace
}  // namespace ordo
