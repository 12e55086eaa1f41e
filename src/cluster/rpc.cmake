# The node-to-node RPC over control frames (peer_rpc.{h,cc}) and the controller's Raft group
# (controller_group.{h,cc}, group 0 over its own partition log), with their tests.
add_library(ordo_cluster_rpc ${CMAKE_CURRENT_LIST_DIR}/peer_rpc.cc)
target_link_libraries(ordo_cluster_rpc PUBLIC ordo_raft_wire ordo_raft)

ordo_test(peer_rpc_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/peer_rpc_test.cc
          LIBS ordo_cluster_rpc ordo_cluster_transport)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(peer_rpc_test PRIVATE -Wno-mismatched-new-delete)
endif()

add_library(ordo_controller_group ${CMAKE_CURRENT_LIST_DIR}/controller_group.cc)
target_link_libraries(ordo_controller_group PUBLIC ordo_cluster_raft ordo_raft_wire ordo_raft
                                                   ordo_storage ordo_model)

ordo_test(controller_group_test
          SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/controller_group_test.cc
                  ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc
          LIBS ordo_controller_group)
