# Raft over the partition log (raft_*.{h,cc}): the storage adapter, its tests and the
# in-process replication tests.
add_library(ordo_cluster_raft ${CMAKE_CURRENT_LIST_DIR}/raft_storage.cc)
target_link_libraries(ordo_cluster_raft PUBLIC ordo_raft ordo_storage ordo_model)

ordo_test(raft_storage_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/raft_storage_test.cc
          ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc LIBS ordo_cluster_raft)

ordo_test(raft_replication_test
          SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/raft_replication_test.cc
          ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc LIBS ordo_cluster_raft)
target_include_directories(raft_replication_test PRIVATE ${CMAKE_SOURCE_DIR})
