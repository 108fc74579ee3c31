// Small C helpers that Swift cannot express efficiently: hardware CRC32C.
#ifndef CAIRN_SHIMS_H
#define CAIRN_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/// CRC32C (Castagnoli) of `len` bytes, continuing from `crc` (pass 0 to start).
/// Uses SSE4.2 when the CPU has it, a table otherwise.
uint32_t cairn_crc32c(uint32_t crc, const void *data, size_t len);

#endif
