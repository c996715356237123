// libFuzzer target: model.safetensors.index.json of a sharded checkpoint. The input is the index; two small valid
// shards sit beside it (model-00001-of-00002.safetensors holding "a" and "b", model-00002-of-00002.safetensors
// holding "c"), so the fuzzer can reach the checks that tie the weight map to the shards' contents.
#include "fuzz_support.h"

#include "formats/safetensors.h"
#include "util/error.h"

#include <cstring>
#include <string>

namespace {

std::string shard(const std::string& headerJson, std::size_t dataBytes)
{
    std::string header = headerJson;
    while (header.size() % 8 != 0)
        header += ' ';
    std::string out(8, '\0');
    const std::uint64_t n = header.size();
    std::memcpy(out.data(), &n, 8);
    return out + header + std::string(dataBytes, '\x01');
}

void writeShards()
{
    static bool written = false;
    if (written)
        return;
    const std::string first = shard(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                    R"("b":{"dtype":"BF16","shape":[2,2],"data_offsets":[8,16]}})", 16);
    const std::string second = shard(R"({"__metadata__":{"format":"pt"},"c":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})", 6);
    mla::fuzz::writeScratchFile("model-00001-of-00002.safetensors", reinterpret_cast<const std::uint8_t*>(first.data()), first.size());
    mla::fuzz::writeScratchFile("model-00002-of-00002.safetensors", reinterpret_cast<const std::uint8_t*>(second.data()), second.size());
    written = true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    writeShards();
    const auto index = mla::fuzz::writeScratchFile("model.safetensors.index.json", data, size);
    try {
        const mla::SafetensorsCollection collection = mla::SafetensorsCollection::open(index.parent_path());
        for (const auto& name : collection.names()) {
            const mla::Tensor t = collection.tensor(name);
            (void)t.toFloats();
        }
        (void)collection.totalBytes();
    } catch (const mla::Error&) {
    }
    return 0;
}
