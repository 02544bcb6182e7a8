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

#endif
