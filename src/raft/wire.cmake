# The replication wire format (docs/replication-wire.md) and the per-node-pair Batcher. Depends
# on base and the header-only parts of types.h (no types.cc), so it builds and links next to
# either ordo_raft or ordo_raft_broken.
add_library(ordo_raft_wire wire.cc batcher.cc)
target_link_libraries(ordo_raft_wire PUBLIC ordo_base)

# The golden-bytes test reads the byte dumps in docs/replication-wire.md; batcher_core_test
# runs real cores (ordo_raft) through the Batcher.
ordo_test(raft_wire_test SOURCES tests/wire_test.cc tests/batcher_test.cc
          tests/batcher_core_test.cc LIBS ordo_raft_wire ordo_raft)
target_compile_definitions(raft_wire_test PRIVATE ORDO_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
