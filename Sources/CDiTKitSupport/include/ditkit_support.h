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

/// Starts writing back `len` bytes of `fd` at `off` to the disk without waiting
/// (sync_file_range SYNC_FILE_RANGE_WRITE), so a closing fsync finds little left to write.
/// A hint: returns 0, or -1 with errno (ignored by callers where the call is unsupported).
int ditkit_write_behind(int fd, int64_t off, int64_t len);


/// Opens `path` (a file or a directory) read-only and takes a shared open-file-description lock
/// on it (fcntl F_OFD_SETLK): the lock lives until the descriptor is closed or the process dies,
/// whatever other descriptors of the file are opened and closed meanwhile, and does not conflict
/// with flock(2) (libhdf5 flocks the files it creates). Returns the descriptor, or -1 with errno.
int ditkit_hold_lock(const char *path);

/// 1 when some open file description holds a lock on `path` (a live writer), 0 when none does,
/// -1 with errno when `path` cannot be opened or tested. Never follows a final symbolic link.
int ditkit_is_locked(const char *path);

/// Guard for read-only file mappings that lose pages while they are read.
///
/// A mapped file that another process truncates raises SIGBUS on the next access to a page past
/// its new end, which kills the process. `ditkit_mapping_guard_install` installs (once) a SIGBUS
/// handler that, for a fault inside a mapping registered with `ditkit_mapping_register`, maps a
/// page of zeros over the faulting page, counts it, and lets the access continue; readers then ask
/// `ditkit_mapping_faults` and refuse what they read. Faults outside registered mappings go to the
/// handler that was installed before (the Swift runtime's crash reporter), unchanged.
/// Returns 0, or -1 with errno set.
int ditkit_mapping_guard_install(void);

/// Registers `[base, base + length)` as a guarded mapping. Returns a slot (>= 0), or -1 when all
/// slots are taken (the mapping then stays unguarded).
int ditkit_mapping_register(const void *base, size_t length);

/// Unregisters a slot returned by `ditkit_mapping_register` (call before unmapping).
void ditkit_mapping_unregister(int slot);

/// Pages of `slot` that were replaced with zeros after a SIGBUS.
uint64_t ditkit_mapping_faults(int slot);

/// Pages of every guarded mapping replaced with zeros since the process started.
uint64_t ditkit_mapping_total_faults(void);

/// glibc's allocator serves every allocation from its heap (no mapping per large buffer) and keeps
/// up to `keep` freed bytes at the heap's top instead of returning them (`mallopt` M_MMAP_MAX 0,
/// M_TRIM_THRESHOLD). Returns 1 when both were set, 0 otherwise (or where the C library is not glibc).
int ditkit_malloc_keep_freed(int keep);

/// Bytes glibc's allocator holds in mappings of their own (`mallinfo2().hblkhd`; 0 elsewhere).
size_t ditkit_malloc_mapped_bytes(void);

#endif
