#pragma once
// What the crash tests share: a forked child that reports through a pipe, killed with SIGKILL
// and reaped; and the environment overrides of seed and rounds.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/assert.h"

namespace ordo::crashtest {

inline int64_t env_or(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoll(v) : fallback;
}

struct Child {
  pid_t pid = -1;
  int read_fd = -1;  // the parent's end of the child's report pipe
};

// Forks; the child runs body(write_fd) and exits with 127 if it returns (bodies exec or loop
// until killed).
template <typename Body>
Child fork_child(Body body) {
  int fds[2];
  ORDO_ASSERT(::pipe(fds) == 0);
  pid_t pid = ::fork();
  ORDO_ASSERT(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    body(fds[1]);
    ::_exit(127);
  }
  ::close(fds[1]);
  return Child{pid, fds[0]};
}

// Starts `path` with `args` plus the report pipe's write end (its fd number) as the last
// argument. posix_spawn does not copy the parent's page tables as fork does: under
// AddressSanitizer, whose shadow memory makes them large, that is most of a round's cost.
inline Child spawn_child(const std::string& path, std::vector<std::string> args) {
  int fds[2];
  ORDO_ASSERT(::pipe(fds) == 0);
  args.insert(args.begin(), path);
  args.push_back(std::to_string(fds[1]));
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  ORDO_ASSERT(posix_spawn_file_actions_init(&actions) == 0);
  ORDO_ASSERT(posix_spawn_file_actions_addclose(&actions, fds[0]) == 0);
  pid_t pid = -1;
  ORDO_ASSERT(posix_spawn(&pid, path.c_str(), &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  return Child{pid, fds[0]};
}

// SIGKILLs the child and reaps it; fails the test if it had exited on its own. The read end
// stays open (what the child wrote before dying can still be read); the caller closes it.
inline void kill_and_reap(const Child& c) {
  ::kill(c.pid, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(c.pid, &status, 0), c.pid);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child exited on its own (status " << status << ")";
}

}  // namespace ordo::crashtest
