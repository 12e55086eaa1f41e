#pragma once
// The largest single allocation made through operator new while tracking is on: the proof in
// compression_test that a refused decompression bomb never allocated its full output. (The
// codec libraries allocate their own small, fixed-size state with malloc; the output is a
// std::vector.) allocation_tracker.cc replaces the global operator new and delete; it is a
// separate file so that g++ does not see malloc and free inlined into new and delete pairs.

#include <cstddef>

namespace ordo::compression {

// Starts tracking from zero.
void start_tracking_allocations();
// Stops tracking and returns the largest allocation since the start.
size_t stop_tracking_allocations();

}  // namespace ordo::compression
