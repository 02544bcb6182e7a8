#define _GNU_SOURCE
#include "ditkit_support.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <stdlib.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int ditkit_exchange_paths(const char *from, const char *to) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int ditkit_rename_noreplace(const char *from, const char *to) {
#ifdef SYS_renameat2
    return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int ditkit_hold_lock(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return -1;
    struct flock l = {0};
    l.l_type = F_RDLCK;
    l.l_whence = SEEK_SET;
    if (fcntl(fd, F_OFD_SETLK, &l) != 0) { int e = errno; close(fd); errno = e; return -1; }
    return fd;
}

int ditkit_is_locked(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) return -1;
    struct flock l = {0};
    l.l_type = F_WRLCK;
    l.l_whence = SEEK_SET;
    int r = fcntl(fd, F_OFD_GETLK, &l);
    int e = errno;
    close(fd);
    if (r != 0) { errno = e; return -1; }
    return l.l_type != F_UNLCK;
}

int ditkit_copy_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len) {
    loff_t in = off_in, out = off_out;
    while (len > 0) {
        ssize_t n = copy_file_range(fd_in, &in, fd_out, &out, len, 0);
        if (n > 0) { len -= (size_t)n; continue; }
        if (n == 0) { errno = EIO; return -1; }
        if (errno == EINTR) continue;
        if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) return -1;
        // Fallback: a plain copy through a buffer.
        size_t chunk = 1 << 20;
        char *buf = malloc(chunk);
        if (!buf) { errno = ENOMEM; return -1; }
        while (len > 0) {
            size_t want = len < chunk ? len : chunk;
            ssize_t r = pread(fd_in, buf, want, in);
            if (r < 0) { if (errno == EINTR) continue; free(buf); return -1; }
            if (r == 0) { free(buf); errno = EIO; return -1; }
            ssize_t done = 0;
            while (done < r) {
                ssize_t w = pwrite(fd_out, buf + done, (size_t)(r - done), out + done);
                if (w < 0) { if (errno == EINTR) continue; free(buf); return -1; }
                done += w;
            }
            in += r; out += r; len -= (size_t)r;
        }
        free(buf);
        return 0;
    }
    return 0;
}

int ditkit_write_behind(int fd, int64_t off, int64_t len) {
    return sync_file_range(fd, (off64_t)off, (off64_t)len, SYNC_FILE_RANGE_WRITE);
}

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

int ditkit_read_ahead(void *addr, size_t len) {
    return madvise(addr, len, MADV_WILLNEED);
}

int ditkit_populate_read(void *addr, size_t len) {
    return madvise(addr, len, MADV_POPULATE_READ);
}
