// Sparse-aware file copy for chunk copy-ups (see cairn_shims.h).
#define _GNU_SOURCE
#include "cairn_shims.h"
#include <errno.h>
#include <sys/types.h>
#include <unistd.h>

static int copy_range_slow(int in_fd, int out_fd, off_t start, off_t end) {
    char buffer[1 << 16];
    while (start < end) {
        size_t want = (size_t)(end - start) < sizeof buffer ? (size_t)(end - start) : sizeof buffer;
        ssize_t n = pread(in_fd, buffer, want, start);
        if (n < 0) { if (errno == EINTR) continue; return -errno; }
        if (n == 0) return 0;  // Past the end of the source: the rest reads as zeroes anyway.
        ssize_t done = 0;
        while (done < n) {
            ssize_t w = pwrite(out_fd, buffer + done, (size_t)(n - done), start + done);
            if (w < 0) { if (errno == EINTR) continue; return -errno; }
            done += w;
        }
        start += n;
    }
    return 0;
}

static int copy_range(int in_fd, int out_fd, off_t start, off_t end) {
    while (start < end) {
        off64_t in_off = start, out_off = start;
        ssize_t n = copy_file_range(in_fd, &in_off, out_fd, &out_off, (size_t)(end - start), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP) {
                return copy_range_slow(in_fd, out_fd, start, end);
            }
            return -errno;
        }
        if (n == 0) return 0;
        start += n;
    }
    return 0;
}

int cairn_copy_sparse(int in_fd, int out_fd, int64_t length) {
    off_t position = 0;
    while (position < length) {
        off_t data = lseek(in_fd, position, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO) return 0;  // Only a hole is left.
            if (errno == EINVAL) return copy_range(in_fd, out_fd, position, length);  // No SEEK_DATA here.
            return -errno;
        }
        if (data >= length) return 0;
        off_t hole = lseek(in_fd, data, SEEK_HOLE);
        if (hole < 0) return -errno;
        if (hole > length) hole = length;
        int rc = copy_range(in_fd, out_fd, data, hole);
        if (rc != 0) return rc;
        position = hole;
    }
    return 0;
}
