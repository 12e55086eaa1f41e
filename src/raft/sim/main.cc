// raft_sim: runs the deterministic Raft simulator (docs/replication-sim.md).
//
//   raft_sim --seed S [-v|-vv]          one seed; -v traces faults, roles and commits, -vv
//                                       every message as well
//   raft_sim --seeds N [--first S]      seeds S .. S+N-1; stops at the first failure
//   raft_sim --broken NAME --seeds N    runs a deliberately broken variant (broken.h) seed by
//                                       seed, each in a child process, until the checkers
//                                       catch it; fails when N seeds pass
//
// Every failure prints its seed and the command that replays it.

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "raft/broken.h"
#include "raft/sim/sim.h"

namespace {

using namespace ordo::raft;
using namespace ordo::raft::sim;

volatile uint64_t g_current_seed = 0;

// A failed assertion in the core (or the simulator) aborts: say which seed did it. The abort
// comes from assert_fail on this thread (not from an asynchronous signal), so flushing the
// trace first is safe.
void on_abort(int) {
  std::fflush(stdout);
  std::fprintf(stderr, "raft_sim: aborted in seed %llu (replay: make sim SEED=%llu)\n",
               (unsigned long long)g_current_seed, (unsigned long long)g_current_seed);
  std::fflush(stderr);
  std::signal(SIGABRT, SIG_DFL);
  std::raise(SIGABRT);
}

int usage() {
  std::fprintf(stderr,
               "usage: raft_sim --seed S [-v|-vv]\n"
               "       raft_sim --seeds N [--first S]\n"
               "       raft_sim --broken NAME --seeds N [--first S]\n");
  return 2;
}

double wall_seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::optional<uint64_t> seed;
  uint64_t seeds = 0;
  uint64_t first = 1;
  int verbose = 0;
  std::optional<Broken> broken;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (a == "--seed") {
      const char* v = value();
      if (!v) return usage();
      seed = std::strtoull(v, nullptr, 10);
    } else if (a == "--seeds") {
      const char* v = value();
      if (!v) return usage();
      seeds = std::strtoull(v, nullptr, 10);
    } else if (a == "--first") {
      const char* v = value();
      if (!v) return usage();
      first = std::strtoull(v, nullptr, 10);
    } else if (a == "-v" || a == "--verbose") {
      verbose = std::max(verbose, 1);
    } else if (a == "-vv") {
      verbose = 2;
    } else if (a == "--broken") {
      const char* v = value();
      if (!v) return usage();
      for (int b = 0; b < kBrokenVariants; ++b) {
        if (std::strcmp(broken_name(Broken(b)), v) == 0) broken = Broken(b);
      }
      if (!broken) {
        std::fprintf(stderr, "raft_sim: unknown broken variant %s\n", v);
        return 2;
      }
    } else {
      return usage();
    }
  }
  if (seed.has_value() == (seeds != 0)) return usage();
  std::signal(SIGABRT, on_abort);
  g_broken = broken.value_or(Broken::none);
  auto started = std::chrono::steady_clock::now();

  if (seed) {
    g_current_seed = *seed;
    SimOptions o;
    o.seed = *seed;
    o.verbose = verbose;
    SimResult r = run_simulation(o);
    double wall = wall_seconds(started);
    fmt::print("seed {}{}: {}\n{}\n", *seed,
               broken ? fmt::format(" (broken: {})", broken_name(*broken)) : "",
               r.ok ? "passed" : "FAILED " + r.failure, r.stats.to_string());
    fmt::print("{:.0f} simulated seconds per wall second\n",
               double(r.stats.sim_time) / kSecond / std::max(wall, 1e-9));
    return r.ok ? 0 : 1;
  }

  if (!broken) {
    SimStats total;
    for (uint64_t s = first; s < first + seeds; ++s) {
      g_current_seed = s;
      SimOptions o;
      o.seed = s;
      SimResult r = run_simulation(o);
      total.add(r.stats);
      if (!r.ok) {
        fmt::print("seed {}: FAILED {}replay: make sim SEED={}\n", s, r.failure, s);
        return 1;
      }
    }
    double wall = wall_seconds(started);
    fmt::print("{} seeds ({}..{}) passed in {:.1f} s: {}\n", seeds, first, first + seeds - 1, wall,
               total.to_string());
    fmt::print("{:.0f} simulated seconds per wall second\n",
               double(total.sim_time) / kSecond / std::max(wall, 1e-9));
    return 0;
  }

  // A broken variant: the seeds run in a child process, so that an assertion of the core
  // (which aborts) stops only its seed: the child reports each seed before running it, and
  // after an abort a new child goes on with the next seed.
  uint64_t aborted = 0;
  uint64_t next = first;
  const uint64_t end = first + seeds;
  std::fflush(stdout);
  while (next < end) {
    int fds[2];
    if (pipe(fds) != 0) {
      std::perror("pipe");
      return 2;
    }
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return 2;
    }
    if (pid == 0) {
      close(fds[0]);
      if (verbose == 0) {
        // The core's assertion messages of the seeds that abort would drown the result.
        std::FILE* null = std::freopen("/dev/null", "w", stderr);
        (void)null;
      }
      for (uint64_t s = next; s < end; ++s) {
        g_current_seed = s;
        if (write(fds[1], &s, sizeof s) != ssize_t(sizeof s)) _exit(2);
        SimOptions o;
        o.seed = s;
        SimResult r = run_simulation(o);
        if (!r.ok) {
          fmt::print("seed {}: caught: {}", s, r.failure);
          std::fflush(stdout);
          _exit(3);
        }
      }
      _exit(0);
    }
    close(fds[1]);
    uint64_t last = next;
    uint64_t got = 0;
    while (read(fds[0], &got, sizeof got) == ssize_t(sizeof got)) last = got;
    close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, 0) < 0) {
      std::perror("waitpid");
      return 2;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) {
      fmt::print(
          "broken variant {} caught by the checkers after {} seeds (seed {}; {} earlier seeds "
          "stopped on an assertion of the core)\nreplay: make sim SEED={} BROKEN={}\n",
          broken_name(*broken), last - first + 1, last, aborted, last, broken_name(*broken));
      return 0;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) break;  // every seed passed
    if (!WIFSIGNALED(status)) {
      fmt::print("seed {}: the child exited with status {}\n", last, status);
      return 2;
    }
    ++aborted;
    next = last + 1;
  }
  fmt::print(
      "broken variant {} NOT caught by the checkers in {} seeds ({} stopped on an "
      "assertion of the core)\n",
      broken_name(*broken), seeds, aborted);
  return 1;
}
