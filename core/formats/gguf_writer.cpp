#include "formats/gguf_writer.h"

#include "util/error.h"
#include "util/staged_output.h"

#include <cstring>
#include <fstream>

namespace mla {
namespace {

// ggml's GGML_MAX_NAME is 64 bytes including the terminating NUL; llama.cpp refuses longer names.
constexpr std::size_t kMaxTensorName = 63;

GgufValue scalar(GgufValueType type)
{
    GgufValue v;
    v.type = type;
    return v;
}

GgufValue numberArray(GgufValueType type, std::vector<double> numbers)
{
    GgufValue v;
    v.type = GgufValueType::Array;
    v.arrayType = type;
    v.numbers = std::move(numbers);
    return v;
}

template <typename T>
void append(std::vector<std::uint8_t>& out, T value)
{
    const std::size_t at = out.size();
    out.resize(at + sizeof(T));
    std::memcpy(out.data() + at, &value, sizeof(T));
}

void appendString(std::vector<std::uint8_t>& out, const std::string& s)
{
    append<std::uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
}

void appendScalar(std::vector<std::uint8_t>& out, GgufValueType type, double number, std::int64_t integer, bool boolean,
                  const std::string& key)
{
    switch (type) {
    case GgufValueType::U8: append(out, static_cast<std::uint8_t>(integer)); return;
    case GgufValueType::I8: append(out, static_cast<std::int8_t>(integer)); return;
    case GgufValueType::U16: append(out, static_cast<std::uint16_t>(integer)); return;
    case GgufValueType::I16: append(out, static_cast<std::int16_t>(integer)); return;
    case GgufValueType::U32: append(out, static_cast<std::uint32_t>(integer)); return;
    case GgufValueType::I32: append(out, static_cast<std::int32_t>(integer)); return;
    case GgufValueType::U64: append(out, static_cast<std::uint64_t>(integer)); return;
    case GgufValueType::I64: append(out, integer); return;
    case GgufValueType::F32: append(out, static_cast<float>(number)); return;
    case GgufValueType::F64: append(out, number); return;
    case GgufValueType::Bool: append(out, static_cast<std::uint8_t>(boolean ? 1 : 0)); return;
    case GgufValueType::String:
    case GgufValueType::Array: break;
    }
    throw Error("internal: metadata '" + key + "' has no scalar value");
}

bool isIntegerType(GgufValueType t)
{
    return t != GgufValueType::F32 && t != GgufValueType::F64 && t != GgufValueType::Bool && t != GgufValueType::String
           && t != GgufValueType::Array;
}

void appendValue(std::vector<std::uint8_t>& out, const std::string& key, const GgufValue& v)
{
    append(out, static_cast<std::uint32_t>(v.type));
    if (v.type == GgufValueType::String) {
        appendString(out, v.string);
        return;
    }
    if (v.type != GgufValueType::Array) {
        appendScalar(out, v.type, v.number, v.integer, v.boolean, key);
        return;
    }
    append(out, static_cast<std::uint32_t>(v.arrayType));
    if (v.arrayType == GgufValueType::String) {
        append<std::uint64_t>(out, v.strings.size());
        for (const auto& s : v.strings)
            appendString(out, s);
        return;
    }
    if (v.arrayType == GgufValueType::Array)
        throw Error("internal: metadata '" + key + "': nested arrays are not written");
    append<std::uint64_t>(out, v.numbers.size());
    for (double x : v.numbers) {
        const bool flag = x != 0.0;
        appendScalar(out, v.arrayType, x, isIntegerType(v.arrayType) ? static_cast<std::int64_t>(x) : 0, flag, key);
    }
}

} // namespace

GgufValue ggufString(std::string value)
{
    GgufValue v = scalar(GgufValueType::String);
    v.string = std::move(value);
    return v;
}

GgufValue ggufU32(std::uint32_t value)
{
    GgufValue v = scalar(GgufValueType::U32);
    v.integer = value;
    v.number = value;
    return v;
}

GgufValue ggufI32(std::int32_t value)
{
    GgufValue v = scalar(GgufValueType::I32);
    v.integer = value;
    v.number = value;
    return v;
}

GgufValue ggufU64(std::uint64_t value)
{
    GgufValue v = scalar(GgufValueType::U64);
    v.integer = static_cast<std::int64_t>(value);
    v.number = static_cast<double>(value);
    return v;
}

GgufValue ggufF32(float value)
{
    GgufValue v = scalar(GgufValueType::F32);
    v.number = value;
    return v;
}

GgufValue ggufBool(bool value)
{
    GgufValue v = scalar(GgufValueType::Bool);
    v.boolean = value;
    v.integer = value ? 1 : 0;
    v.number = v.integer;
    return v;
}

GgufValue ggufStringArray(std::vector<std::string> values)
{
    GgufValue v;
    v.type = GgufValueType::Array;
    v.arrayType = GgufValueType::String;
    v.strings = std::move(values);
    return v;
}

GgufValue ggufF32Array(const std::vector<float>& values)
{
    return numberArray(GgufValueType::F32, std::vector<double>(values.begin(), values.end()));
}

GgufValue ggufI32Array(const std::vector<std::int32_t>& values)
{
    return numberArray(GgufValueType::I32, std::vector<double>(values.begin(), values.end()));
}

std::uint64_t ggufTensorBytes(const GgufTensorDeclaration& tensor)
{
    std::uint64_t bytes = ggmlRowBytes(tensor.type, static_cast<std::int64_t>(tensor.dims.at(0)));
    for (std::size_t d = 1; d < tensor.dims.size(); ++d)
        bytes *= tensor.dims[d];
    return bytes;
}

FileKind ggufFileKind()
{
    // Only a GGUF file we wrote ourselves is replaced without force: a GGUF the user downloaded is not ours.
    return {"a GGUF file written by MLA Workbench", [](const std::filesystem::path& file) {
                std::ifstream in(file, std::ios::binary);
                char magic[4] = {};
                if (!in.read(magic, 4) || std::memcmp(magic, "GGUF", 4) != 0)
                    return false;
                in.close();
                try {
                    return GgufFile::open(file).find("mla_workbench.version") != nullptr;
                } catch (const std::exception&) {
                    return false;
                }
            }};
}

GgufWriter::GgufWriter(const std::filesystem::path& destination, std::uint32_t alignment, OutputOptions output)
    : m_staged(std::make_unique<StagedFile>(destination, std::move(output), ggufFileKind())), m_alignment(alignment)
{
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        throw Error(destination, "internal: GGUF alignment " + std::to_string(alignment) + " is not a power of two");
    if (alignment != 32)
        setMetadata("general.alignment", ggufU32(alignment));
}

GgufWriter::~GgufWriter() = default;

const std::filesystem::path& GgufWriter::destination() const
{
    return m_staged->destination();
}

void GgufWriter::setMetadata(const std::string& key, GgufValue value)
{
    if (m_headerWritten)
        throw Error(destination(), "internal: metadata '" + key + "' set after tensor data was written");
    if (key.empty())
        throw Error(destination(), "internal: empty metadata key");
    for (const auto& [k, v] : m_metadata) {
        if (k == key)
            throw Error(destination(), "internal: metadata '" + key + "' set twice");
    }
    m_metadata.emplace_back(key, std::move(value));
}

void GgufWriter::declareTensor(GgufTensorDeclaration tensor)
{
    if (m_headerWritten)
        throw Error(destination(), "internal: tensor '" + tensor.name + "' declared after tensor data was written");
    if (tensor.name.empty() || tensor.name.size() > kMaxTensorName)
        throw Error(destination(), "tensor name '" + tensor.name + "' must be 1 to " + std::to_string(kMaxTensorName)
                                       + " bytes (llama.cpp's limit)");
    if (tensor.dims.empty() || tensor.dims.size() > 4)
        throw Error(destination(), "internal: tensor '" + tensor.name + "' has " + std::to_string(tensor.dims.size())
                                       + " dimensions (1 to 4 allowed)");
    for (auto d : tensor.dims) {
        if (d == 0)
            throw Error(destination(), "internal: tensor '" + tensor.name + "' has an empty dimension");
    }
    if (!ggmlRowFits(tensor.type, static_cast<std::int64_t>(tensor.dims[0])))
        throw Error(destination(), "internal: tensor '" + tensor.name + "' rows of " + std::to_string(tensor.dims[0])
                                       + " weights are not whole " + std::string(ggmlTypeTraits(tensor.type).name) + " blocks");
    for (const auto& t : m_tensors) {
        if (t.name == tensor.name)
            throw Error(destination(), "internal: tensor '" + tensor.name + "' declared twice");
    }
    m_tensors.push_back(std::move(tensor));
}

void GgufWriter::put(const void* data, std::size_t size)
{
    m_out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
    if (!m_out)
        throw Error(m_staged->path(), "write failed (disk full?)");
    m_bytesWritten += size;
}

void GgufWriter::writeHeader()
{
    std::vector<std::uint8_t> header;
    header.insert(header.end(), {'G', 'G', 'U', 'F'});
    append<std::uint32_t>(header, 3);
    append<std::uint64_t>(header, m_tensors.size());
    append<std::uint64_t>(header, m_metadata.size());
    for (const auto& [key, value] : m_metadata) {
        appendString(header, key);
        appendValue(header, key, value);
    }
    std::uint64_t offset = 0;
    for (const auto& t : m_tensors) {
        appendString(header, t.name);
        append(header, static_cast<std::uint32_t>(t.dims.size()));
        for (auto d : t.dims)
            append(header, d);
        append(header, static_cast<std::uint32_t>(t.type));
        append(header, offset);
        offset += ggufTensorBytes(t);
        offset = (offset + m_alignment - 1) / m_alignment * m_alignment;
    }
    header.resize((header.size() + m_alignment - 1) / m_alignment * m_alignment, 0);
    m_out.open(m_staged->path(), std::ios::binary | std::ios::trunc);
    if (!m_out)
        throw Error(m_staged->path(), "cannot create");
    put(header.data(), header.size());
    m_headerWritten = true;
}

const GgufTensorDeclaration& GgufWriter::beginTensor(const std::string& name)
{
    if (!m_headerWritten)
        writeHeader();
    if (m_next >= m_tensors.size() || m_tensors[m_next].name != name)
        throw Error(destination(), "internal: tensor '" + name + "' written out of declaration order");
    return m_tensors[m_next];
}

void GgufWriter::endTensor(std::uint64_t bytes)
{
    static const std::uint8_t zeros[64] = {};
    std::uint64_t padding = (m_alignment - bytes % m_alignment) % m_alignment;
    while (padding > 0) {
        const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(padding, sizeof zeros));
        put(zeros, n);
        padding -= n;
    }
    ++m_next;
}

void GgufWriter::writeTensor(const std::string& name, const float* values, std::size_t count)
{
    const GgufTensorDeclaration& t = beginTensor(name);
    std::uint64_t numel = 1;
    for (auto d : t.dims)
        numel *= d;
    if (numel != count)
        throw Error(destination(), "internal: tensor '" + name + "' declared with " + std::to_string(numel)
                                       + " weights, given " + std::to_string(count));
    const std::uint64_t rowLength = t.dims[0];
    writeTensorRows(name, [&](std::uint64_t row, float* out) {
        std::memcpy(out, values + row * rowLength, static_cast<std::size_t>(rowLength) * sizeof(float));
    });
}

void GgufWriter::writeTensorRows(const std::string& name, const RowSource& row)
{
    const GgufTensorDeclaration& t = beginTensor(name);
    const auto rowLength = static_cast<std::int64_t>(t.dims[0]);
    std::uint64_t rows = 1;
    for (std::size_t d = 1; d < t.dims.size(); ++d)
        rows *= t.dims[d];
    m_scratch.resize(static_cast<std::size_t>(ggmlRowBytes(t.type, rowLength)));
    m_rowScratch.resize(static_cast<std::size_t>(rowLength));
    for (std::uint64_t r = 0; r < rows; ++r) {
        row(r, m_rowScratch.data());
        encodeGgmlRow(t.type, m_rowScratch.data(), m_scratch.data(), rowLength);
        put(m_scratch.data(), m_scratch.size());
    }
    endTensor(ggufTensorBytes(t));
}

void GgufWriter::writeTensorBytes(const std::string& name, const void* bytes, std::size_t size)
{
    const GgufTensorDeclaration& t = beginTensor(name);
    if (size != ggufTensorBytes(t))
        throw Error(destination(), "internal: tensor '" + name + "' needs " + std::to_string(ggufTensorBytes(t))
                                       + " bytes, given " + std::to_string(size));
    put(bytes, size);
    endTensor(size);
}

void GgufWriter::finish()
{
    if (!m_headerWritten)
        writeHeader();
    if (m_next != m_tensors.size())
        throw Error(destination(), "internal: " + std::to_string(m_tensors.size() - m_next) + " declared tensors were not written");
    m_out.flush();
    if (!m_out)
        throw Error(m_staged->path(), "write failed (disk full?)");
    m_out.close();
    m_staged->commit();
}

} // namespace mla
