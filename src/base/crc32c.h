#pragma once
// CRC-32C (Castagnoli), as used by Kafka's RecordBatch v2. Uses the SSE4.2 crc32 instruction
// when the CPU has it (checked once at run time) and a slicing-by-8 table otherwise.

#include <cstddef>
#include <cstdint>

namespace ordo {

// Extends crc (0 for a fresh computation) over data. crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t crc32c(uint32_t crc, const void* data, size_t size);

// The same, forced onto one implementation (for tests and benchmarks).
uint32_t crc32c_software(uint32_t crc, const void* data, size_t size);
uint32_t crc32c_hardware(uint32_t crc, const void* data, size_t size);  // requires has_hw
bool crc32c_has_hardware();

}  // namespace ordo
