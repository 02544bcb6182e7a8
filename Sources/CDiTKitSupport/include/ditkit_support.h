// Small C helpers for calls Swift cannot import directly (variadic or macro-based).
#ifndef DITKIT_SUPPORT_H
#define DITKIT_SUPPORT_H
#include <stddef.h>
#include <stdint.h>

/// renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE): atomically swaps two paths.
/// Returns 0 on success, -1 with errno set (ENOSYS/EINVAL where unsupported).
int ditkit_exchange_paths(const char *from, const char *to);

/// renameat2 with RENAME_NOREPLACE: renames only if `to` does not exist.
int ditkit_rename_noreplace(const char *from, const char *to);

/// Copies `len` bytes from `fd_in` at `off_in` to `fd_out` at `off_out` inside the kernel
/// (copy_file_range), falling back to pread/pwrite where the kernel cannot. Returns 0, or -1 with errno.
int ditkit_copy_range(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len);

/// Opens `path` (a file or a directory) read-only and takes a shared open-file-description lock
/// on it (fcntl F_OFD_SETLK): the lock lives until the descriptor is closed or the process dies,
/// whatever other descriptors of the file are opened and closed meanwhile, and does not conflict
/// with flock(2) (libhdf5 flocks the files it creates). Returns the descriptor, or -1 with errno.
int ditkit_hold_lock(const char *path);

/// 1 when some open file description holds a lock on `path` (a live writer), 0 when none does,
/// -1 with errno when `path` cannot be opened or tested. Never follows a final symbolic link.
int ditkit_is_locked(const char *path);

#endif
