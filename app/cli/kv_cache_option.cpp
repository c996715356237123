#include "kv_cache_option.h"

#include "util/error.h"

namespace mla::cli {

OptionSpec kvCacheOption()
{
    return {"kv-cache", "TYPE", "KV cache storage: f32 (default), bf16, int8 or int4 (quantised per token in groups; int4/32 sets the group)"};
}

OptionSpec kvCacheRopeOption()
{
    return {"kv-cache-rope", "TYPE", "storage of the RoPE keys of MLA layers (default: as --kv-cache, int8 under int4)"};
}

OptionSpec kvCacheGroupOption()
{
    return {"kv-cache-group", "N", "group size of quantised caches (default 64, or the row width when smaller)"};
}

KvCacheFormat kvCacheFormatFrom(const Arguments& args)
{
    const auto group = args.integer("kv-cache-group", 1, kMaxCacheGroupSize);
    try {
        return kvCacheFormatFromSettings(args.valueOr("kv-cache", ""), args.valueOr("kv-cache-rope", ""), group.value_or(0));
    } catch (const Error& e) {
        throw UsageError{e.what()};
    }
}

} // namespace mla::cli
