// libFuzzer target: the safetensors header parser (length prefix, JSON, dtypes, shapes, offsets, overlaps). Every
// tensor the parser accepts is read end to end, so an accepted range outside the bytes is an AddressSanitizer report.
#include "fuzz_support.h"

#include "formats/safetensors.h"
#include "tensor/dtype.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    try {
        const mla::SafetensorsHeader header = mla::parseSafetensorsHeader(data, size, size, "fuzz.safetensors");
        unsigned checksum = 0;
        for (const auto& e : header.entries) {
            if (e.end > e.begin) {
                checksum += data[header.dataStart + e.begin];
                checksum += data[header.dataStart + e.end - 1];
            }
        }
        (void)checksum;
    } catch (const mla::Error&) {
    }
    return 0;
}
