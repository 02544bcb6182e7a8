// SIGBUS guard for read-only file mappings (see ditkit_support.h).
#define _GNU_SOURCE
#include "ditkit_support.h"
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { SLOTS = 256 };

struct slot {
    _Atomic uintptr_t base;      // 0 when free
    _Atomic size_t length;
    _Atomic uint64_t faults;
    _Atomic int taken;
};

static struct slot slots[SLOTS];
static struct sigaction previous;
static uintptr_t page_size;
static _Atomic int installed;
static _Atomic uint64_t total_faults;

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    int saved = errno;
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t base = atomic_load_explicit(&slots[i].base, memory_order_acquire);
        if (base == 0) continue;
        size_t length = atomic_load_explicit(&slots[i].length, memory_order_relaxed);
        if (address < base || address - base >= length) continue;
        // SAFETY: the page lies inside a registered read-only mapping that stays mapped while it is
        // registered; replacing it with zeros changes what the reader sees, which the fault count reports.
        void *page = (void *)(address & ~(page_size - 1));
        if (mmap(page, page_size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) break;
        atomic_fetch_add_explicit(&slots[i].faults, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&total_faults, 1, memory_order_relaxed);
        errno = saved;
        return;
    }
    errno = saved;
    // Not a guarded mapping: hand the fault to whoever handled SIGBUS before.
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        // Default action: restore it; returning re-executes the access, which now terminates.
        signal(SIGBUS, SIG_DFL);
    }
}

int ditkit_mapping_guard_install(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return 0;
    page_size = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGBUS, &action, &previous) != 0) {
        atomic_store(&installed, 0);
        return -1;
    }
    return 0;
}

int ditkit_mapping_register(const void *base, size_t length) {
    if (base == NULL || length == 0) return -1;
    for (int i = 0; i < SLOTS; i++) {
        int expected = 0;
        if (!atomic_compare_exchange_strong(&slots[i].taken, &expected, 1)) continue;
        atomic_store_explicit(&slots[i].faults, 0, memory_order_relaxed);
        atomic_store_explicit(&slots[i].length, length, memory_order_relaxed);
        atomic_store_explicit(&slots[i].base, (uintptr_t)base, memory_order_release);
        return i;
    }
    return -1;
}

void ditkit_mapping_unregister(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    atomic_store_explicit(&slots[slot].base, 0, memory_order_release);
    atomic_store_explicit(&slots[slot].taken, 0, memory_order_release);
}

uint64_t ditkit_mapping_faults(int slot) {
    if (slot < 0 || slot >= SLOTS) return 0;
    return atomic_load_explicit(&slots[slot].faults, memory_order_relaxed);
}

uint64_t ditkit_mapping_total_faults(void) {
    return atomic_load_explicit(&total_faults, memory_order_relaxed);
}
