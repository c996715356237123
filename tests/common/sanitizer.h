#pragma once

// MLA_ADDRESS_SANITIZER is defined in a build with AddressSanitizer (GCC's __SANITIZE_ADDRESS__, clang's
// __has_feature), where a test may skip, saying why, what the ordinary build checks: resident memory, heavy runs.
#if defined(__SANITIZE_ADDRESS__)
#define MLA_ADDRESS_SANITIZER
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MLA_ADDRESS_SANITIZER
#endif
#endif

namespace mla::test {

constexpr bool underAddressSanitizer()
{
#ifdef MLA_ADDRESS_SANITIZER
    return true;
#else
    return false;
#endif
}

} // namespace mla::test
