// Runs the real `ordo` binary as a user would.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>

#include "base/file.h"
#include "storage/partition_log.h"
#include "storage/tests/test_util.h"

namespace ordo {
namespace {

struct CommandRun {
  int exit_code;
  std::string output;
};

CommandRun run(const std::string& args) {
  std::string cmd = std::string(ORDO_BIN) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

void write_partition(const std::string& dir, int batches) {
  ManualClock clock(1'700'000'000'000);
  storage::LogConfig cfg;
  cfg.flush_mode = storage::FlushMode::none;
  auto log = storage::PartitionLog::open(dir, cfg, clock);
  ASSERT_TRUE(log);
  for (int i = 0; i < batches; ++i) {
    auto b = storage::testing::make_batch(3, "v" + std::to_string(i));
    ASSERT_TRUE((*log)->append(b));
  }
  ASSERT_TRUE((*log)->close());
}

TEST(Cli, ServeOpensTheDataDirAndStopsCleanlyOnSigterm) {
  storage::testing::TempDir tmp;
  std::string data = tmp.path() + "/data";
  write_partition(data + "/orders-0", 4);
  std::string log_path = tmp.path() + "/serve.log";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::execl(ORDO_BIN, ORDO_BIN, "serve", "--data-dir", data.c_str(), "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Wait until it has opened the data dir (bounded).
  std::string out;
  for (int i = 0; i < 10000 && out.find("listening on") == std::string::npos; ++i) {
    ::usleep(1000);
    out = read_file(log_path, 1 << 20).value_or("");
  }
  // One summary line for the data dir (orders-0 and the 50 __consumer_offsets partitions it
  // creates), not a line per partition.
  EXPECT_NE(out.find("2 topics, 51 partitions (0 offline"), std::string::npos) << out;
  EXPECT_EQ(out.find("partition orders-0:"), std::string::npos) << out;
  // A second process cannot share the data dir.
  CommandRun second =
      run("serve --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir " + data);
  EXPECT_EQ(second.exit_code, 1);
  EXPECT_NE(second.output.find("in use by another process"), std::string::npos) << second.output;

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(file_exists(data + "/orders-0/clean-shutdown"));
  out = read_file(log_path, 1 << 20).value_or("");
  EXPECT_NE(out.find("closed cleanly"), std::string::npos) << out;
}

TEST(Cli, DumpLogPrintsAndChecksBatches) {
  storage::testing::TempDir tmp;
  write_partition(tmp.path() + "/t-0", 3);
  std::string seg = tmp.path() + "/t-0/00000000000000000000.log";
  CommandRun good = run("dump-log --records " + seg);
  EXPECT_EQ(good.exit_code, 0) << good.output;
  EXPECT_NE(good.output.find("baseOffset: 3 lastOffset: 5 count: 3"), std::string::npos)
      << good.output;
  EXPECT_NE(good.output.find("| offset: 7 timestamp: 1001 key: key-1 value: v2-1"),
            std::string::npos)
      << good.output;
  EXPECT_NE(good.output.find("3 batches"), std::string::npos);

  auto f = File::open(seg, O_RDWR);
  ASSERT_TRUE(f);
  uint8_t b = 0x5a;
  int64_t one = int64_t(storage::testing::make_batch(3, "v0").size());
  ASSERT_TRUE(f->pwrite_all({&b, 1}, one + 70));
  CommandRun bad = run("dump-log " + seg);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("crc: INVALID"), std::string::npos) << bad.output;

  CommandRun missing = run("dump-log " + tmp.path() + "/nope.log");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("not_found"), std::string::npos) << missing.output;
}

TEST(Cli, HelpDocumentsTheOptions) {
  CommandRun help = run("serve --help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* opt : {"--data-dir", "--flush-mode", "--shards", "--truncate-corrupt"}) {
    EXPECT_NE(help.output.find(opt), std::string::npos) << opt;
  }
  EXPECT_NE(run("serve --flush-mode sometimes --data-dir /nonexistent/x").exit_code, 0);
}

}  // namespace
}  // namespace ordo
