// Early writeback of chunk files (see cairn_shims.h).
#define _GNU_SOURCE
#include "cairn_shims.h"
#include <errno.h>
#include <fcntl.h>

int cairn_start_writeback(int fd) {
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : -errno;
}
