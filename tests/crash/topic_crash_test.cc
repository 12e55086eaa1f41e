// Crash test of topic creation with real processes: for every step k of a creation (the
// registry's record of it, each partition, the registry entry that publishes it) a forked child
// opens the broker and creates a topic, or adds partitions to one, and SIGKILLs itself at step
// k (Broker::set_create_step_hook). The parent then opens the broker on the same data dir and
// checks that the topic is whole or absent: its partition count in the registry, the partitions
// the logs hold and the directories on disk all agree, with no half topic and no pending
// creation left. One more round per case lets the child finish: the topic is then there whole.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <set>

#include "broker/broker.h"
#include "broker/handlers.h"
#include "storage/tests/test_util.h"
#include "tests/crash/child_process.h"

namespace ordo::broker {
namespace {

constexpr int32_t kPartitions = 3;

BrokerConfig config(const std::string& dir) {
  BrokerConfig c;
  c.data_dir = dir;
  c.log.flush_mode = storage::FlushMode::none;
  c.offsets_topic_num_partitions = 1;
  c.log_cleaner_enable = false;
  return c;
}

// Partition numbers of `topic` with a directory in the data dir.
std::set<int32_t> dirs_of(const std::string& dir, const std::string& topic) {
  std::set<int32_t> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    auto tp = model::parse_partition_dir(e.path().filename().string());
    if (tp && tp->topic == topic) out.insert(tp->partition);
  }
  return out;
}

std::set<int32_t> range(int32_t n) {
  std::set<int32_t> out;
  for (int32_t i = 0; i < n; ++i) out.insert(i);
  return out;
}

// Opens the broker and returns how many partitions `topic` has (0: absent), after checking
// that the registry, the open logs and the directories agree.
int32_t check_whole_or_absent(const std::string& dir, const std::string& topic) {
  auto b = Broker::open(config(dir));
  EXPECT_TRUE(b) << b.error().to_string();
  if (!b) return -1;
  Broker& brk = **b;
  EXPECT_TRUE(brk.topics().pending_creates().empty());
  auto snap = brk.topics().snapshot();
  const TopicInfo* t = brk.topics().find(*snap, topic);
  int32_t n = t ? t->partitions : 0;
  std::set<int32_t> open;
  for (const auto& p : brk.logs().status()) {
    if (p.tp.topic != topic) continue;
    EXPECT_TRUE(p.online) << p.tp.to_string() << ": " << p.error;
    open.insert(p.tp.partition);
  }
  EXPECT_EQ(open, range(n));
  EXPECT_EQ(dirs_of(dir, topic), range(n));
  EXPECT_TRUE(brk.close());
  return n;
}

// Runs `change` in a child that SIGKILLs itself at creation step `crash_at`; returns whether
// it was killed there (false: it finished).
template <typename Change>
bool run_child(const std::string& dir, int crash_at, Change change) {
  auto child = crashtest::fork_child([&](int) {
    auto b = Broker::open(config(dir));
    if (!b) ::_exit(3);
    (*b)->set_create_step_hook([crash_at](int step) -> Result<void> {
      if (step == crash_at) ::kill(::getpid(), SIGKILL);
      return ok();
    });
    bool done = change(**b);
    ::_exit(done ? 0 : 4);
  });
  ::close(child.read_fd);
  int status = 0;
  EXPECT_EQ(::waitpid(child.pid, &status, 0), child.pid);
  if (WIFSIGNALED(status)) {
    EXPECT_EQ(WTERMSIG(status), SIGKILL);
    return true;
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  return false;
}

TEST(TopicCrash, ACreationKilledAtAnyStepLeavesTheWholeTopicOrNone) {
  // Steps: 0 before the registry records the creation, 1..3 before each partition, 4 before
  // the registry publishes the topic; 5 is never reached (the child finishes).
  for (int k = 0; k <= kPartitions + 2; ++k) {
    SCOPED_TRACE("crash at step " + std::to_string(k));
    storage::testing::TempDir tmp;
    const std::string dir = tmp.path() + "/data";
    bool killed = run_child(dir, k, [](Broker& b) {
      return Broker::Handlers::topic_admin(b).create_topic("t", kPartitions, {}, false).error ==
             protocol::ErrorCode::none;
    });
    EXPECT_EQ(killed, k <= kPartitions + 1);
    int32_t n = check_whole_or_absent(dir, "t");
    EXPECT_EQ(n, killed ? 0 : kPartitions);
    // After an undone creation the name is free and a creation succeeds whole.
    if (n == 0) {
      EXPECT_FALSE(run_child(dir, -1, [](Broker& b) {
        return Broker::Handlers::topic_admin(b).create_topic("t", kPartitions, {}, false).error ==
               protocol::ErrorCode::none;
      }));
      EXPECT_EQ(check_whole_or_absent(dir, "t"), kPartitions);
    }
  }
}

TEST(TopicCrash, AddingPartitionsKilledAtAnyStepAddsAllOrNone) {
  for (int k = 0; k <= kPartitions + 2; ++k) {
    SCOPED_TRACE("crash at step " + std::to_string(k));
    storage::testing::TempDir tmp;
    const std::string dir = tmp.path() + "/data";
    ASSERT_FALSE(run_child(dir, -1, [](Broker& b) {
      return Broker::Handlers::topic_admin(b).create_topic("t", 2, {}, false).error ==
             protocol::ErrorCode::none;
    }));
    bool killed = run_child(dir, k, [](Broker& b) {
      return Broker::Handlers::topic_admin(b).set_partitions("t", 2 + kPartitions, false).first ==
             protocol::ErrorCode::none;
    });
    EXPECT_EQ(killed, k <= kPartitions + 1);
    EXPECT_EQ(check_whole_or_absent(dir, "t"), killed ? 2 : 2 + kPartitions);
  }
}

}  // namespace
}  // namespace ordo::broker
