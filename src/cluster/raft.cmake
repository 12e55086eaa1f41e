# Raft over the partition log (raft_*.{h,cc}): the storage adapter, its tests and the
# in-process replication tests.
if(NOT TARGET ordo_raft)
  # Until src/raft's implementation is in the build: the storage adapter needs only its types.
  add_library(ordo_raft_types_only ${CMAKE_SOURCE_DIR}/src/raft/types.cc)
  target_link_libraries(ordo_raft_types_only PUBLIC ordo_base)
  set(ORDO_CLUSTER_RAFT_LIB ordo_raft_types_only)
else()
  set(ORDO_CLUSTER_RAFT_LIB ordo_raft)
endif()

add_library(ordo_cluster_raft ${CMAKE_CURRENT_LIST_DIR}/raft_storage.cc)
target_link_libraries(ordo_cluster_raft PUBLIC ${ORDO_CLUSTER_RAFT_LIB} ordo_storage ordo_model)

ordo_test(raft_storage_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/raft_storage_test.cc
          ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc LIBS ordo_cluster_raft)

if(TARGET ordo_raft)
  ordo_test(raft_replication_test
            SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/raft_replication_test.cc
            ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc LIBS ordo_cluster_raft)
  target_include_directories(raft_replication_test PRIVATE ${CMAKE_SOURCE_DIR})
endif()
