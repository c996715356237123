#include "util/allocator_policy.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mla {

void keepFreedMemoryForReuse()
{
#if defined(__GLIBC__)
    // Blocks up to 32 MiB come from the heap (glibc's largest adaptive threshold, fixed here so that it does not
    // start lower), and the heap's top is returned to the system only beyond 1 GiB free.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

} // namespace mla
