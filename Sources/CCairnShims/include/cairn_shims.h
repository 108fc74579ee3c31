// Small C helpers that Swift cannot express efficiently: hardware CRC32C; a sparse file
// copy; a closefrom spawn action (both need _GNU_SOURCE, which Swift's Glibc module does not set).
#ifndef CAIRN_SHIMS_H
#define CAIRN_SHIMS_H
#include <stddef.h>
#include <stdint.h>

/// CRC32C (Castagnoli) of `len` bytes, continuing from `crc` (pass 0 to start).
/// Uses SSE4.2 when the CPU has it, a table otherwise.
uint32_t cairn_crc32c(uint32_t crc, const void *data, size_t len);

/// Copies bytes [0, length) of `in_fd` to the same offsets of `out_fd`, data extents
/// only (SEEK_DATA / SEEK_HOLE), with copy_file_range (pread/pwrite where the kernel or
/// file system cannot). Holes stay holes if `out_fd` starts sparse. 0, or -errno.
int cairn_copy_sparse(int in_fd, int out_fd, int64_t length);

/// Starts writeback of every dirty page of `fd` without waiting for it
/// (sync_file_range(SYNC_FILE_RANGE_WRITE)). 0, or -errno.
int cairn_start_writeback(int fd);

/// Adds "close every descriptor from `from` up" to a posix_spawn_file_actions_t.
int cairn_spawn_addclosefrom(void *actions, int from);

#endif
