#pragma once

#include "arguments.h"
#include "engine/kv_cache_format.h"

namespace mla::cli {

// --kv-cache TYPE, --kv-cache-rope TYPE and --kv-cache-group N (generate, eval, convert --check): how the KV cache of
// the model run (for convert, the converted model in its check) is stored (docs/kv-cache.md).
OptionSpec kvCacheOption();
OptionSpec kvCacheRopeOption();
OptionSpec kvCacheGroupOption();
KvCacheFormat kvCacheFormatFrom(const Arguments& args);

} // namespace mla::cli
