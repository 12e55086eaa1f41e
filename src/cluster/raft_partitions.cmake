# RaftPartitions (raft_partitions.{h,cc}): the partition seam of a cluster-mode broker, one
# raft::Replica per partition on its LogManager shard, and its in-process cluster test.
add_library(ordo_cluster_raft_partitions ${CMAKE_CURRENT_LIST_DIR}/raft_partitions.cc)
target_link_libraries(ordo_cluster_raft_partitions PUBLIC ordo_cluster ordo_cluster_raft
                      ordo_raft_wire ordo_raft)

ordo_test(raft_partitions_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/raft_partitions_test.cc
          ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc
          LIBS ordo_cluster_raft_partitions ordo_compression)
