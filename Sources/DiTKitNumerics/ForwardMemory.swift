// The C allocator's policy for forward passes. A forward allocates and frees hundreds of megabytes
// per layer (a FLUX.1 single-stream block at 1024 px: its MLP projection alone, 4608 x 12288, is 226 MB).
// glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh mapping and
// unmaps it on free, so each layer's buffers are new pages: a page fault and a page of zeros for every
// 4 KiB written, 5-10 % of a FLUX block's time. PyTorch's caching allocator keeps freed blocks instead.
import CDiTKitSupport

public enum ForwardMemory {
    /// Makes glibc's allocator serve large buffers from its heap and keep what is freed there (up to
    /// 1 GiB at the top of the heap) for the next allocation, instead of mapping fresh pages and
    /// unmapping them on free. Process-wide, for processes that run forward passes (`ditkit verify`
    /// and `sample`, the benchmarks' forwards): the resident set then stays near the largest forward's
    /// peak until the process ends. Conversions do not call it (their large buffers are mapped
    /// explicitly and returned at once). Does nothing where the C library is not glibc.
    public static func keepFreedBuffers() {
        _ = ditkit_malloc_keep_freed(1 << 30)
    }
}
