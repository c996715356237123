#include "model/mla_config.h"

namespace mla {
namespace {

struct LatentMethodName {
    LatentMethod method;
    std::string_view name;
    std::string_view publicName;
};

constexpr LatentMethodName kLatentMethodNames[] = {
    {LatentMethod::Joint, "joint", "joint"},
    {LatentMethod::Split, "split", "split"},
    {LatentMethod::Key, "key", "only_key"},
    {LatentMethod::Value, "value", "only_value"},
    {LatentMethod::None, "none", "none"},
};

} // namespace

std::string_view latentMethodName(LatentMethod m)
{
    return kLatentMethodNames[static_cast<int>(m)].name;
}

std::string_view latentMethodPublicName(LatentMethod m)
{
    return kLatentMethodNames[static_cast<int>(m)].publicName;
}

bool parseLatentMethod(std::string_view name, LatentMethod& out)
{
    for (const auto& entry : kLatentMethodNames) {
        if (entry.name == name || entry.publicName == name) {
            out = entry.method;
            return true;
        }
    }
    return false;
}

std::int64_t MlaLayerConfig::latentWidth() const
{
    switch (method) {
    case LatentMethod::Joint:
    case LatentMethod::Key:
        return latentK;
    case LatentMethod::Split:
        return latentK + latentV;
    case LatentMethod::Value:
        return latentV;
    case LatentMethod::None:
        return 0;
    }
    return 0;
}

std::int64_t MlaLayerConfig::cacheElements(std::int64_t kvHeads, std::int64_t headDim) const
{
    const std::int64_t ropeDims = 2 * ropePairs();
    std::int64_t elements = kvHeads * ropeDims + latentWidth();
    if (!compressesKeys())
        elements += kvHeads * (headDim - ropeDims);
    if (!compressesValues())
        elements += kvHeads * headDim;
    return elements;
}

} // namespace mla
