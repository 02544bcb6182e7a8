// xxHash (Debian libxxhash-dev): XXH3-128, the per-tensor checksum of format-3 bundles.
#include <xxhash.h>
