// Float buffers that start on a cache line. `UnsafeMutablePointer<Float>.allocate` gives malloc's
// 16-byte alignment, and glibc serves large blocks from mmap at 16 bytes past a page: every tensor
// of a plan then starts 16 bytes into a cache line, and each 64-byte (16-lane) load or store of
// a row at a channel offset that is a multiple of 16 straddles two lines, which costs two. The
// depthwise kernel gradient (CKernels/depthwise_grad_avx512.c) measured 1.25 -> 0.84 us per
// EfficientNet block5 row with its tensors on a cache line.

/// An uninitialised buffer of `count` floats starting on a 64-byte boundary. Release it with
/// `deallocate()` as any other (the C allocator frees aligned blocks with `free`).
func allocateAlignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: max(1, count))
}
