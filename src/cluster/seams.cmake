# The seams: the cluster layer between the Kafka handlers and storage. The partition table
# (topics, partitions, replica assignments), the reconciler that makes local logs match it,
# and the partition seam (append/read/offsets/truncate with leadership errors).
add_library(ordo_cluster ${CMAKE_CURRENT_LIST_DIR}/partition_table.cc
                         ${CMAKE_CURRENT_LIST_DIR}/reconciler.cc ${CMAKE_CURRENT_LIST_DIR}/partitions.cc)
target_link_libraries(ordo_cluster PUBLIC ordo_storage)

ordo_test(cluster_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/tests/cluster_test.cc
                               ${CMAKE_SOURCE_DIR}/src/storage/tests/test_util.cc
          LIBS ordo_cluster ordo_compression)
