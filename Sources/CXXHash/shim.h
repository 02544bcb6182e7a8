// xxHash (Debian libxxhash-dev): XXH3-128, the per-tensor checksum of format-3 bundles.
#include <xxhash.h>
#if defined(__x86_64__)
// libxxhash also exports XXH3 with runtime dispatch (xxh_x86dispatch.c: AVX2 or AVX-512 where the
// CPU has them; the library's plain entry points are built for SSE2, half the speed on AVX2 hosts).
// Same digests: the vector width changes how the stripes are computed, not their values.
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
static inline XXH_errorcode ditkit_xxh3_128_update(XXH3_state_t *state, const void *input, size_t length) {
    return XXH3_128bits_update_dispatch(state, input, length);
}
static inline XXH128_hash_t ditkit_xxh3_128(const void *input, size_t length) {
    return XXH3_128bits_dispatch(input, length);
}
#else
static inline XXH_errorcode ditkit_xxh3_128_update(XXH3_state_t *state, const void *input, size_t length) {
    return XXH3_128bits_update(state, input, length);
}
static inline XXH128_hash_t ditkit_xxh3_128(const void *input, size_t length) {
    return XXH3_128bits(input, length);
}
#endif
