#include "formats/gguf.h"

#include "formats/ggml_quants.h"
#include "util/byte_reader.h"
#include "util/error.h"
#include "util/memory_budget.h"

#include <algorithm>
#include <cmath>

namespace mla {
namespace {

struct GgmlTypeRow {
    std::uint32_t id;
    const char* name;
    std::optional<DType> dtype; // set where we compute with it
};

constexpr GgmlTypeRow kGgmlTypes[] = {
    {0, "F32", DType::F32}, {1, "F16", DType::F16}, {2, "Q4_0", {}}, {3, "Q4_1", {}}, {6, "Q5_0", {}},
    {7, "Q5_1", {}}, {8, "Q8_0", {}}, {9, "Q8_1", {}}, {10, "Q2_K", {}}, {11, "Q3_K", {}}, {12, "Q4_K", {}},
    {13, "Q5_K", {}}, {14, "Q6_K", {}}, {15, "Q8_K", {}}, {16, "IQ2_XXS", {}}, {17, "IQ2_XS", {}},
    {18, "IQ3_XXS", {}}, {19, "IQ1_S", {}}, {20, "IQ4_NL", {}}, {21, "IQ3_S", {}}, {22, "IQ2_S", {}},
    {23, "IQ4_XS", {}}, {24, "I8", {}}, {25, "I16", {}}, {26, "I32", {}}, {27, "I64", {}}, {28, "F64", {}},
    {29, "IQ1_M", {}}, {30, "BF16", DType::BF16},
};

const GgmlTypeRow* findGgmlType(std::uint32_t id)
{
    for (const auto& row : kGgmlTypes) {
        if (row.id == id)
            return &row;
    }
    return nullptr;
}

constexpr std::size_t kMaxNesting = 4;

std::size_t scalarSize(GgufValueType t)
{
    switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    case GgufValueType::String: case GgufValueType::Array: return 8; // at least a length / count field
    }
    return 0;
}

std::string readGgufString(ByteReader& r, const char* what)
{
    const auto length = r.read<std::uint64_t>(what);
    if (length > r.remaining())
        throw Error(r.file(), std::string("truncated: ") + what + " of " + std::to_string(length) + " bytes at offset "
                                  + std::to_string(r.offset()) + " runs past the end of the file");
    return r.readString(static_cast<std::size_t>(length), what);
}

GgufValueType readValueType(ByteReader& r, const std::string& key)
{
    const auto raw = r.read<std::uint32_t>("metadata value type");
    if (raw > static_cast<std::uint32_t>(GgufValueType::F64))
        throw Error(r.file(), "metadata '" + key + "' has unknown value type " + std::to_string(raw));
    return static_cast<GgufValueType>(raw);
}

// A float's integer part where it has one that fits; 0 for NaN, infinities and out-of-range values (converting those
// is undefined behaviour, and a hostile file can hold any bits).
std::int64_t integerPart(double x)
{
    constexpr double kLimit = 9.2233720368547748e18; // 2^63
    return std::isfinite(x) && x > -kLimit && x < kLimit ? static_cast<std::int64_t>(x) : 0;
}

void readScalar(ByteReader& r, GgufValueType t, GgufValue& v)
{
    switch (t) {
    case GgufValueType::U8: v.integer = r.read<std::uint8_t>("value"); break;
    case GgufValueType::I8: v.integer = r.read<std::int8_t>("value"); break;
    case GgufValueType::U16: v.integer = r.read<std::uint16_t>("value"); break;
    case GgufValueType::I16: v.integer = r.read<std::int16_t>("value"); break;
    case GgufValueType::U32: v.integer = r.read<std::uint32_t>("value"); break;
    case GgufValueType::I32: v.integer = r.read<std::int32_t>("value"); break;
    case GgufValueType::U64: v.integer = static_cast<std::int64_t>(r.read<std::uint64_t>("value")); break;
    case GgufValueType::I64: v.integer = r.read<std::int64_t>("value"); break;
    case GgufValueType::F32: v.number = r.read<float>("value"); v.integer = integerPart(v.number); return;
    case GgufValueType::F64: v.number = r.read<double>("value"); v.integer = integerPart(v.number); return;
    case GgufValueType::Bool: {
        const auto b = r.read<std::uint8_t>("value");
        if (b > 1)
            throw Error(r.file(), "boolean metadata value " + std::to_string(b) + " at offset " + std::to_string(r.offset() - 1));
        v.boolean = b != 0;
        v.integer = b;
        break;
    }
    case GgufValueType::String: v.string = readGgufString(r, "string value"); return;
    case GgufValueType::Array: break;
    }
    v.number = static_cast<double>(v.integer);
}

void readValue(ByteReader& r, GgufValueType t, GgufValue& v, const std::string& key, std::size_t depth, bool keep)
{
    v.type = t;
    if (t != GgufValueType::Array) {
        readScalar(r, t, v);
        return;
    }
    if (depth >= kMaxNesting)
        throw Error(r.file(), "metadata '" + key + "' nests arrays too deeply");
    v.arrayType = readValueType(r, key);
    const auto count = r.read<std::uint64_t>("array length");
    // Each element needs at least this many bytes, which bounds the count before anything is allocated.
    const std::size_t minimum = scalarSize(v.arrayType);
    if (count > r.remaining() / minimum)
        throw Error(r.file(), "metadata '" + key + "' claims " + std::to_string(count) + " array elements, more than the file can hold");
    if (keep && v.arrayType == GgufValueType::String)
        v.strings.reserve(static_cast<std::size_t>(count));
    else if (keep && v.arrayType != GgufValueType::Array)
        v.numbers.reserve(static_cast<std::size_t>(count));
    GgufValue element;
    for (std::uint64_t i = 0; i < count; ++i) {
        if (v.arrayType == GgufValueType::Array) {
            readValue(r, GgufValueType::Array, element, key, depth + 1, false);
            continue;
        }
        if (v.arrayType == GgufValueType::String) {
            std::string s = readGgufString(r, "string array element");
            if (keep)
                v.strings.push_back(std::move(s));
            continue;
        }
        readScalar(r, v.arrayType, element);
        if (keep)
            v.numbers.push_back(element.number);
    }
}

} // namespace

std::string ggmlTypeName(std::uint32_t type)
{
    if (const auto* row = findGgmlType(type))
        return row->name;
    return "#" + std::to_string(type);
}

GgufFile GgufFile::open(const std::filesystem::path& path)
{
    auto file = MappedFile::open(path);
    return parse(file->data(), file->size(), path, file);
}

GgufFile GgufFile::parse(const std::uint8_t* data, std::size_t size, const std::filesystem::path& path,
                         std::shared_ptr<const void> owner)
{
    GgufFile g;
    g.m_path = path;
    g.m_owner = std::move(owner);
    g.m_data = data;
    g.m_size = size;
    ByteReader r(data, size, path);
    if (size < 4 || std::string(reinterpret_cast<const char*>(data), 4) != "GGUF")
        throw Error(path, "not a GGUF file (missing the GGUF magic)");
    r.skip(4, "magic");
    g.m_version = r.read<std::uint32_t>("version");
    if (g.m_version != 2 && g.m_version != 3)
        throw Error(path, "GGUF version " + std::to_string(g.m_version) + " is not supported (2 and 3 are)");
    const auto tensorCount = r.read<std::uint64_t>("tensor count");
    const auto kvCount = r.read<std::uint64_t>("metadata count");
    // A key-value pair needs at least 12 bytes and a tensor record at least 24, bounding both counts by the file.
    if (kvCount > r.remaining() / 12)
        throw Error(path, "header claims " + std::to_string(kvCount) + " metadata entries, more than the file can hold");
    if (tensorCount > r.remaining() / 24)
        throw Error(path, "header claims " + std::to_string(tensorCount) + " tensors, more than the file can hold");

    for (std::uint64_t i = 0; i < kvCount; ++i) {
        std::string key = readGgufString(r, "metadata key");
        const GgufValueType type = readValueType(r, key);
        GgufValue value;
        readValue(r, type, value, key, 0, true);
        if (!g.m_metadata.emplace(key, std::move(value)).second)
            throw Error(path, "metadata key '" + key + "' appears twice");
    }

    std::uint64_t alignment = 32;
    if (const auto* a = g.find("general.alignment")) {
        if (a->type != GgufValueType::U32 || a->integer <= 0 || (a->integer & (a->integer - 1)) != 0)
            throw Error(path, "general.alignment must be a power of two");
        alignment = static_cast<std::uint64_t>(a->integer);
    }

    for (std::uint64_t i = 0; i < tensorCount; ++i) {
        GgufTensorInfo t;
        t.name = readGgufString(r, "tensor name");
        const auto nDims = r.read<std::uint32_t>("tensor dimension count");
        if (nDims == 0 || nDims > 4)
            throw Error(path, "tensor '" + t.name + "' has " + std::to_string(nDims) + " dimensions (1 to 4 allowed)");
        std::uint64_t numel = 1;
        for (std::uint32_t d = 0; d < nDims; ++d) {
            const auto dim = r.read<std::uint64_t>("tensor dimension");
            numel = checkedMul(numel, dim, path, "tensor shape");
            t.dims.push_back(dim);
        }
        t.ggmlType = r.read<std::uint32_t>("tensor type");
        t.offset = r.read<std::uint64_t>("tensor offset");
        const auto* type = findGgmlType(t.ggmlType);
        const GgmlBlockType* block = ggmlBlockType(t.ggmlType);
        if ((!type || !type->dtype) && !block)
            throw Error(path, "unsupported tensor type " + ggmlTypeName(t.ggmlType) + " in tensor '" + t.name
                                  + "' (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)");
        if (t.offset % alignment != 0)
            throw Error(path, "tensor '" + t.name + "' offset " + std::to_string(t.offset) + " is not aligned to "
                                  + std::to_string(alignment));
        t.values = numel;
        if (block) {
            if (t.dims[0] % block->blockValues != 0)
                throw Error(path, "tensor '" + t.name + "' has rows of " + std::to_string(t.dims[0]) + " values, not a multiple of "
                                      + block->name + "'s block of " + std::to_string(block->blockValues));
            t.bytes = checkedMul(numel / block->blockValues, block->blockBytes, path, "tensor size");
        } else {
            t.bytes = checkedMul(numel, dtypeSize(*type->dtype), path, "tensor size");
        }
        if (!g.m_index.emplace(t.name, g.m_tensors.size()).second)
            throw Error(path, "tensor '" + t.name + "' appears twice");
        g.m_tensors.push_back(std::move(t));
    }

    g.m_dataStart = (r.offset() + alignment - 1) / alignment * alignment;
    if (g.m_dataStart > size && !g.m_tensors.empty())
        throw Error(path, "truncated: the tensor data section would start at " + std::to_string(g.m_dataStart)
                              + ", past the end of the file (" + std::to_string(size) + " bytes)");
    const std::uint64_t dataSize = size >= g.m_dataStart ? size - g.m_dataStart : 0;
    std::vector<const GgufTensorInfo*> byOffset;
    for (const auto& t : g.m_tensors) {
        if (t.offset > dataSize || t.bytes > dataSize - t.offset)
            throw Error(path, "tensor '" + t.name + "' data [" + std::to_string(t.offset) + ", +" + std::to_string(t.bytes)
                                  + ") runs past the end of the file");
        if (t.bytes > 0)
            byOffset.push_back(&t);
    }
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (std::size_t i = 1; i < byOffset.size(); ++i) {
        if (byOffset[i]->offset < byOffset[i - 1]->offset + byOffset[i - 1]->bytes)
            throw Error(path, "tensors '" + byOffset[i - 1]->name + "' and '" + byOffset[i]->name + "' overlap");
    }
    return g;
}

const GgufValue* GgufFile::find(const std::string& key) const
{
    auto it = m_metadata.find(key);
    return it == m_metadata.end() ? nullptr : &it->second;
}

std::optional<Tensor> GgufFile::tensor(const std::string& name) const
{
    auto it = m_index.find(name);
    if (it == m_index.end())
        return std::nullopt;
    const GgufTensorInfo& t = m_tensors[it->second];
    std::vector<std::int64_t> shape(t.dims.rbegin(), t.dims.rend());
    const std::uint8_t* data = m_data + m_dataStart + t.offset;
    if (const GgmlBlockType* block = ggmlBlockType(t.ggmlType)) {
        const std::uint64_t bytes = checkedMul(t.values, 4, m_path, "dequantised size");
        requireMemory(bytes, "dequantising tensor '" + t.name + "' (" + block->name + ") to F32", m_path);
        auto buffer = std::shared_ptr<float[]>(new float[static_cast<std::size_t>(std::max<std::uint64_t>(t.values, 1))]);
        dequantizeGgml(*block, data, buffer.get(), static_cast<std::size_t>(t.values));
        const void* p = buffer.get();
        return Tensor(DType::F32, std::move(shape), p, std::shared_ptr<const void>(buffer, buffer.get()));
    }
    return Tensor(*findGgmlType(t.ggmlType)->dtype, std::move(shape), data, m_owner);
}

GgufQuantization GgufFile::quantization() const
{
    GgufQuantization q;
    if (const GgufValue* v = find("general.file_type"); v && v->type != GgufValueType::String && v->type != GgufValueType::Array)
        q.fileType = ggufFileTypeName(v->integer).value_or("file type #" + std::to_string(v->integer));
    for (const auto& t : m_tensors) {
        ++q.tensorTypes[ggmlTypeName(t.ggmlType)];
        q.quantized = q.quantized || ggmlBlockType(t.ggmlType) != nullptr;
    }
    return q;
}

std::uint64_t GgufFile::dequantizedBytes() const
{
    std::uint64_t total = 0;
    for (const auto& t : m_tensors) {
        if (ggmlBlockType(t.ggmlType))
            total += t.values * 4;
    }
    return total;
}

} // namespace mla
