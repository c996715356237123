#pragma once

namespace mla {

// Asks the C library's allocator to keep freed memory for the next allocation instead of returning it to the system
// at once. A conversion allocates and frees the same large per-layer matrices (activations, scores, normal
// equations) thousands of times; glibc's defaults hand blocks above its adaptive threshold back to the kernel on
// every free, so every reuse faults in and zeroes fresh pages: 1.3 s of system time in a 15 s `convert --preset
// best` of the SmolLM-135M shape's 8-layer cut (docs/benchmarks.md). For a process that runs one job and exits (the
// CLI): at most 1 GiB of freed memory is kept. Without effect where the allocator is not glibc's.
void keepFreedMemoryForReuse();

} // namespace mla
