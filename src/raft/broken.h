#pragma once
// Deliberately broken variants of the core and the replica driver, compiled in only where
// ORDO_RAFT_BROKEN is defined: the library ordo_raft_broken, linked only by the simulator's
// tests, which prove the checkers catch each one. The production library ordo_raft is built
// without the macro: there ORDO_RAFT_BUG(x) is the constant false and the branches vanish.

#include <cstdint>

namespace ordo::raft {

enum class Broken : uint8_t {
  none = 0,
  vote_before_durable,     // the driver sends messages before their state is durable
  ack_before_fsync,        // the driver reports writes durable before the sync completes
  commit_by_counting,      // an earlier term's entry commits by counting replicas (Figure 8)
  skip_log_matching,       // a follower accepts entries without checking prev_term
  vote_twice,              // a voter grants a second candidate in the same term
  commit_without_durable,  // the leader counts its own log before it is durable
};
constexpr int kBrokenVariants = 7;
const char* broken_name(Broken b);

#ifdef ORDO_RAFT_BROKEN
extern Broken g_broken;  // the simulator sets it; one thread
#define ORDO_RAFT_BUG(x) (::ordo::raft::g_broken == ::ordo::raft::Broken::x)
#else
#define ORDO_RAFT_BUG(x) false
#endif

}  // namespace ordo::raft
