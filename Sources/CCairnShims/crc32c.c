// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) with an SSE4.2 fast path.
#include "cairn_shims.h"
#include <string.h>

static uint32_t table[8][256];
static int table_ready;
static int has_sse42 = -1;

__attribute__((constructor)) static void build_table(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = table[0][n];
        for (int s = 1; s < 8; s++) { c = table[0][c & 0xff] ^ (c >> 8); table[s][n] = c; }
    }
    table_ready = 1;
}

static uint32_t crc_soft(uint32_t crc, const unsigned char *p, size_t len) {
    if (!table_ready) build_table();
    while (len >= 8) {
        uint64_t v; memcpy(&v, p, 8);
        v ^= crc;
        crc = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff] ^
              table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff] ^
              table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
        p += 8; len -= 8;
    }
    while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len) {
    uint64_t c = crc;
    while (len >= 8) { uint64_t v; memcpy(&v, p, 8); c = __builtin_ia32_crc32di(c, v); p += 8; len -= 8; }
    uint32_t c32 = (uint32_t)c;
    while (len--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t cairn_crc32c(uint32_t crc, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
#if defined(__x86_64__)
    if (has_sse42 < 0) { __builtin_cpu_init(); has_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0; }
    if (has_sse42) return ~crc_hw(crc, p, len);
#endif
    return ~crc_soft(crc, p, len);
}
