#pragma once
// CRC-32C (Castagnoli), as used by Kafka's RecordBatch v2. Checked once at run time, the best
// the CPU has: carry-less multiplication folding 256 bytes per round (AVX-512 VPCLMULQDQ), the
// SSE4.2 crc32 instruction in three streams, or a slicing-by-8 table.

#include <cstddef>
#include <cstdint>

namespace ordo {

// Extends crc (0 for a fresh computation) over data. crc32c(0, "123456789", 9) == 0xE3069283.
uint32_t crc32c(uint32_t crc, const void* data, size_t size);

// The same, forced onto one implementation (for tests and benchmarks).
uint32_t crc32c_software(uint32_t crc, const void* data, size_t size);
uint32_t crc32c_sse42(uint32_t crc, const void* data, size_t size);  // requires has_sse42
uint32_t crc32c_clmul(uint32_t crc, const void* data, size_t size);  // requires has_clmul
bool crc32c_has_sse42();
bool crc32c_has_clmul();  // AVX-512 with VPCLMULQDQ (and SSE4.2)

}  // namespace ordo
