# The cluster metadata (metadata.{h,cc}: commands, their JSON codec, ClusterState), replica
# placement (placement.{h,cc}) and the controller's decisions (controller_logic.{h,cc}): pure
# code, no threads or sockets. Their tests, and the fuzz target of decode_command (declared
# here like tests/fuzz/CMakeLists.txt declares the others: a libFuzzer binary under ORDO_FUZZ,
# a replay of the committed corpus in every build).
add_library(ordo_cluster_metadata ${CMAKE_CURRENT_LIST_DIR}/metadata.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/placement.cc
                                  ${CMAKE_CURRENT_LIST_DIR}/controller_logic.cc)
target_link_libraries(ordo_cluster_metadata PUBLIC ordo_cluster ordo_raft)

ordo_test(metadata_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/metadata_test.cc
          LIBS ordo_cluster_metadata)
ordo_test(placement_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/placement_test.cc
          LIBS ordo_cluster_metadata)
ordo_test(controller_logic_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/controller_logic_test.cc
          LIBS ordo_cluster_metadata)

# The committed seeds of the metadata_command fuzz corpus double as golden files of the format.
target_compile_definitions(metadata_test PRIVATE
  ORDO_METADATA_COMMAND_CORPUS="${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/metadata_command")
target_link_libraries(metadata_test PRIVATE ordo_base)

# Fuzz target of decode_command and ClusterState::restore (tests/fuzz/fuzz_metadata_command.cc):
# fuzz_metadata_command with -DORDO_FUZZ=ON under clang; its replay over the committed corpus
# (tests/fuzz/corpus/metadata_command) in every build.
set(ordo_metadata_fuzz_src ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_metadata_command.cc)
if(ORDO_FUZZ)
  add_executable(fuzz_metadata_command ${ordo_metadata_fuzz_src})
  target_link_libraries(fuzz_metadata_command PRIVATE ordo_cluster_metadata)
  target_link_options(fuzz_metadata_command PRIVATE -fsanitize=fuzzer)
endif()
add_executable(fuzz_metadata_command_replay ${ordo_metadata_fuzz_src}
                                            ${CMAKE_SOURCE_DIR}/tests/fuzz/replay_main.cc)
target_link_libraries(fuzz_metadata_command_replay PRIVATE ordo_cluster_metadata)
ordo_test_driver(fuzz_metadata_command_replay)
add_test(NAME fuzz_metadata_command_corpus
         COMMAND fuzz_metadata_command_replay
                 ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/metadata_command)
