# The cluster metadata (metadata.{h,cc}: commands, their JSON codec, ClusterState), replica
# placement (placement.{h,cc}) and the controller's decisions (controller_logic.{h,cc}): pure
# code, no threads or sockets. Their tests, and the fuzz target of decode_command (declared
# here like tests/fuzz/CMakeLists.txt declares the others: a libFuzzer binary under ORDO_FUZZ,
# a replay of the committed corpus in every build).
add_library(ordo_cluster_metadata ${CMAKE_CURRENT_LIST_DIR}/metadata.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/placement.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/controller_logic.cc)
target_link_libraries(ordo_cluster_metadata PUBLIC ordo_cluster)

ordo_test(metadata_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/metadata_test.cc
          LIBS ordo_cluster_metadata)
ordo_test(placement_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/placement_test.cc
          LIBS ordo_cluster_metadata)
ordo_test(controller_logic_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/controller_logic_test.cc
          LIBS ordo_cluster_metadata)
