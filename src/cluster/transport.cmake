# The node-to-node TCP transport (peer_transport.{h,cc}) and its loopback test.
add_library(ordo_cluster_transport ${CMAKE_CURRENT_LIST_DIR}/peer_transport.cc)
target_link_libraries(ordo_cluster_transport PUBLIC ordo_raft_wire ordo_raft)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  # g++ 12's false mismatched-new-delete on Asio's coroutine frames (see src/broker).
  target_compile_options(ordo_cluster_transport PRIVATE -Wno-mismatched-new-delete)
endif()

ordo_test(peer_transport_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/peer_transport_test.cc
          LIBS ordo_cluster_transport)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(peer_transport_test PRIVATE -Wno-mismatched-new-delete)
endif()
