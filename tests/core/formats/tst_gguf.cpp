// The GGUF reader as hostile-input parser: the real stories260K.gguf parses and matches the llama2.c weights; every
// prefix of it and every single-byte corruption of its header is an Error (never a crash or a huge allocation); and
// hand-built files that lie about counts, lengths, dimensions, offsets, alignment or types give one message naming
// the file and the problem. Model-level checks go through loadModel on re-serialised copies of the real file.
#include "common/model_fixtures.h"
#include "common/test_support.h"

#include "engine/transformer.h"
#include "formats/gguf.h"
#include "model/model_loader.h"
#include "util/error.h"

#include <cstring>
#include <fstream>
#include <functional>
#include <optional>

using namespace mla;
namespace fs = std::filesystem;

namespace {

fs::path ggufPath() { return test::modelsDir() / "stories260K" / "stories260K.gguf"; }

using mla::test::fileBytes;

using mla::test::writeBytes;

using mla::test::put;

using mla::test::putString;

// Writes GGUF files field by field, so that any field can be made to lie.
struct GgufBuilder {
    struct KeyValue {
        std::string key;
        std::vector<std::uint8_t> typeAndValue;
    };
    struct TensorRecord {
        std::string name;
        std::vector<std::uint64_t> dims;
        std::uint32_t type = 0;
        std::vector<std::uint8_t> data;
        std::optional<std::uint64_t> offset; // default: packed, aligned
    };

    std::string magic = "GGUF";
    std::uint32_t version = 3;
    std::optional<std::uint64_t> kvCountOverride;
    std::optional<std::uint64_t> tensorCountOverride;
    std::uint64_t alignment = 32; // used for packing; add general.alignment to tell the reader
    std::vector<KeyValue> kvs;
    std::vector<TensorRecord> tensors;

    void raw(const std::string& key, std::uint32_t type, const std::vector<std::uint8_t>& value)
    {
        KeyValue kv{key, {}};
        put<std::uint32_t>(kv.typeAndValue, type);
        kv.typeAndValue.insert(kv.typeAndValue.end(), value.begin(), value.end());
        kvs.push_back(std::move(kv));
    }
    void u32(const std::string& key, std::uint32_t v)
    {
        std::vector<std::uint8_t> b;
        put(b, v);
        raw(key, 4, b);
    }
    void f32(const std::string& key, float v)
    {
        std::vector<std::uint8_t> b;
        put(b, v);
        raw(key, 6, b);
    }
    void str(const std::string& key, const std::string& v)
    {
        std::vector<std::uint8_t> b;
        putString(b, v);
        raw(key, 8, b);
    }
    void remove(const std::string& key)
    {
        std::erase_if(kvs, [&](const KeyValue& kv) { return kv.key == key; });
    }
    TensorRecord* tensor(const std::string& name)
    {
        for (auto& t : tensors)
            if (t.name == name)
                return &t;
        return nullptr;
    }
    void f32Tensor(const std::string& name, std::vector<std::uint64_t> dims, const std::vector<float>& values)
    {
        TensorRecord t{name, std::move(dims), 0, {}, {}};
        t.data.resize(values.size() * 4);
        std::memcpy(t.data.data(), values.data(), t.data.size());
        tensors.push_back(std::move(t));
    }

    std::vector<std::uint8_t> build() const
    {
        std::vector<std::uint8_t> out(magic.begin(), magic.end());
        put(out, version);
        put<std::uint64_t>(out, tensorCountOverride.value_or(tensors.size()));
        put<std::uint64_t>(out, kvCountOverride.value_or(kvs.size()));
        for (const auto& kv : kvs) {
            putString(out, kv.key);
            out.insert(out.end(), kv.typeAndValue.begin(), kv.typeAndValue.end());
        }
        std::vector<std::uint64_t> offsets;
        std::uint64_t next = 0;
        for (const auto& t : tensors) {
            offsets.push_back(t.offset.value_or(next));
            next = (t.offset.value_or(next) + t.data.size() + alignment - 1) / alignment * alignment;
        }
        for (std::size_t i = 0; i < tensors.size(); ++i) {
            const auto& t = tensors[i];
            putString(out, t.name);
            put<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
            for (auto d : t.dims)
                put(out, d);
            put(out, t.type);
            put(out, offsets[i]);
        }
        while (out.size() % alignment != 0)
            out.push_back(0);
        const std::size_t dataStart = out.size();
        for (std::size_t i = 0; i < tensors.size(); ++i) {
            if (tensors[i].data.empty())
                continue;
            const std::size_t end = dataStart + offsets[i] + tensors[i].data.size();
            if (out.size() < end)
                out.resize(end, 0);
            std::memcpy(out.data() + dataStart + offsets[i], tensors[i].data.data(), tensors[i].data.size());
        }
        return out;
    }
};

// Re-encodes a parsed value (scalars and one-level arrays, all the real file holds).
std::vector<std::uint8_t> encodeValue(const GgufValue& v)
{
    std::vector<std::uint8_t> b;
    auto scalar = [&](GgufValueType t, double number, std::int64_t integer) {
        switch (t) {
        case GgufValueType::U8: case GgufValueType::Bool: put<std::uint8_t>(b, static_cast<std::uint8_t>(integer)); break;
        case GgufValueType::I8: put<std::int8_t>(b, static_cast<std::int8_t>(integer)); break;
        case GgufValueType::U16: put<std::uint16_t>(b, static_cast<std::uint16_t>(integer)); break;
        case GgufValueType::I16: put<std::int16_t>(b, static_cast<std::int16_t>(integer)); break;
        case GgufValueType::U32: put<std::uint32_t>(b, static_cast<std::uint32_t>(integer)); break;
        case GgufValueType::I32: put<std::int32_t>(b, static_cast<std::int32_t>(integer)); break;
        case GgufValueType::U64: put<std::uint64_t>(b, static_cast<std::uint64_t>(integer)); break;
        case GgufValueType::I64: put<std::int64_t>(b, integer); break;
        case GgufValueType::F32: put<float>(b, static_cast<float>(number)); break;
        case GgufValueType::F64: put<double>(b, number); break;
        default: break;
        }
    };
    if (v.type == GgufValueType::String) {
        putString(b, v.string);
    } else if (v.type == GgufValueType::Array) {
        put<std::uint32_t>(b, static_cast<std::uint32_t>(v.arrayType));
        if (v.arrayType == GgufValueType::String) {
            put<std::uint64_t>(b, v.strings.size());
            for (const auto& s : v.strings)
                putString(b, s);
        } else {
            put<std::uint64_t>(b, v.numbers.size());
            for (double n : v.numbers)
                scalar(v.arrayType, n, static_cast<std::int64_t>(n));
        }
    } else {
        scalar(v.type, v.number, v.integer);
    }
    return b;
}

// A builder holding everything of a parsed GGUF file, in its original order.
GgufBuilder builderFrom(const GgufFile& g, const std::vector<std::string>& keyOrder)
{
    GgufBuilder b;
    for (const auto& key : keyOrder) {
        const GgufValue& v = *g.find(key);
        b.raw(key, static_cast<std::uint32_t>(v.type), encodeValue(v));
    }
    for (const auto& info : g.tensors()) {
        const Tensor t = *g.tensor(info.name);
        GgufBuilder::TensorRecord r{info.name, info.dims, info.ggmlType, {}, {}};
        const auto* p = static_cast<const std::uint8_t*>(t.data());
        r.data.assign(p, p + t.bytes());
        b.tensors.push_back(std::move(r));
    }
    return b;
}

// The metadata keys of the real file in file order (the parser keeps them in a map).
std::vector<std::string> realKeyOrder()
{
    const auto bytes = fileBytes(ggufPath());
    std::size_t o = 24;
    std::uint64_t count = 0;
    std::memcpy(&count, bytes.data() + 16, 8);
    std::vector<std::string> keys;
    auto u64 = [&]() { std::uint64_t v; std::memcpy(&v, bytes.data() + o, 8); o += 8; return v; };
    auto u32 = [&]() { std::uint32_t v; std::memcpy(&v, bytes.data() + o, 4); o += 4; return v; };
    std::function<void(std::uint32_t)> skip = [&](std::uint32_t t) {
        static const std::size_t sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (t == 8) {
            o += u64();
        } else if (t == 9) {
            const std::uint32_t at = u32();
            const std::uint64_t n = u64();
            for (std::uint64_t i = 0; i < n; ++i)
                skip(at);
        } else {
            o += sizes[t];
        }
    };
    for (std::uint64_t i = 0; i < count; ++i) {
        const std::uint64_t n = u64();
        keys.emplace_back(reinterpret_cast<const char*>(bytes.data() + o), n);
        o += n;
        skip(u32());
    }
    return keys;
}

std::string parseError(const std::vector<std::uint8_t>& bytes, const fs::path& name = "/x/case.gguf")
{
    try {
        GgufFile::parse(bytes.data(), bytes.size(), name, nullptr);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

std::string loadError(const fs::path& path)
{
    try {
        loadModel(path);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

using mla::test::logitsOf;

// A tiny valid file: one F32 tensor [2, 3] (dims 3, 2) and one F16 vector.
GgufBuilder tinyBuilder()
{
    GgufBuilder b;
    b.str("general.architecture", "llama");
    b.f32Tensor("a", {3, 2}, {1, 2, 3, 4, 5, 6});
    GgufBuilder::TensorRecord h{"h", {2}, 1, {0x00, 0x3c, 0x00, 0xc0}, {}}; // 1.0, -2.0 in F16
    b.tensors.push_back(h);
    return b;
}

} // namespace

class TestGguf : public QObject {
    Q_OBJECT

private slots:
    void realFileParses();
    void realFileMatchesLlama2c();
    void everyPrefixIsAnError();
    void headerByteFlipsNeverCrash();
    void tinyFileParses();
    void lyingFields_data();
    void lyingFields();
    void reserialisedRealFileIsIdentical();
    void modelLevelErrors();
};

void TestGguf::realFileParses()
{
    const GgufFile g = GgufFile::open(ggufPath());
    QCOMPARE(g.version(), 3u);
    QCOMPARE(g.tensors().size(), std::size_t(48));
    QCOMPARE(g.metadata().size(), std::size_t(19));
    QCOMPARE(g.find("general.architecture")->string, std::string("llama"));
    QCOMPARE(g.find("llama.embedding_length")->integer, std::int64_t(64));
    QCOMPARE(g.find("llama.attention.head_count_kv")->integer, std::int64_t(4));
    QCOMPARE(g.find("tokenizer.ggml.tokens")->strings.size(), std::size_t(512));
    QCOMPARE(g.find("tokenizer.ggml.tokens")->strings[1], std::string("<s>"));
    QCOMPARE(g.find("tokenizer.ggml.scores")->numbers.size(), std::size_t(512));
    const auto emb = g.tensor("token_embd.weight");
    QVERIFY(emb.has_value());
    QCOMPARE(emb->shape(), std::vector<std::int64_t>({512, 64})); // ggml dims reversed into [rows, cols]
    QCOMPARE(g.tensor("blk.0.attn_k.weight")->shape(), std::vector<std::int64_t>({32, 64}));
    QCOMPARE(g.tensor("blk.0.ffn_down.weight")->shape(), std::vector<std::int64_t>({64, 172}));
    QVERIFY(!g.tensor("blk.5.attn_q.weight").has_value());
    QCOMPARE(ggmlTypeName(2), std::string("Q4_0"));
    QCOMPARE(ggmlTypeName(12345), std::string("#12345"));
    QCOMPARE(detectCheckpointFormat(ggufPath()), std::string("gguf"));
}

void TestGguf::realFileMatchesLlama2c()
{
    // The GGUF is llama.cpp's conversion of stories260K.bin: after loading both (each normalised to the half RoPE
    // layout), every weight is the same float.
    const Model a = loadModel(ggufPath());
    const Model b = loadModel(test::demoDir() / "stories260K.bin");
    QCOMPARE(a.format, std::string("gguf"));
    QCOMPARE(a.sourceRopeLayout, std::string("interleaved"));
    QCOMPARE(a.config.hidden, b.config.hidden);
    QCOMPARE(a.config.heads, b.config.heads);
    QCOMPARE(a.config.kvHeads, b.config.kvHeads);
    QCOMPARE(a.config.headDim, b.config.headDim);
    QCOMPARE(a.config.layers, b.config.layers);
    QCOMPARE(a.config.ffn, b.config.ffn);
    QCOMPARE(a.config.vocab, b.config.vocab);
    QCOMPARE(static_cast<float>(a.config.rmsEps), static_cast<float>(b.config.rmsEps));
    QCOMPARE(a.config.bosId, std::optional<int>(1));
    QCOMPARE(a.config.eosIds, std::vector<int>({2}));
    QVERIFY(a.embeddedVocabulary.has_value());
    QCOMPARE(a.embeddedVocabulary->tokens.size(), std::size_t(512));
    QCOMPARE(a.embeddedVocabulary->model, std::string("llama"));
    QCOMPARE(a.embedding.toFloats(), b.embedding.toFloats());
    QCOMPARE(a.output.toFloats(), b.output.toFloats());
    QVERIFY(a.outputNorm == b.outputNorm);
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        QCOMPARE(a.layers[l].q.toFloats(), b.layers[l].q.toFloats());
        QCOMPARE(a.layers[l].k.toFloats(), b.layers[l].k.toFloats());
        QCOMPARE(a.layers[l].v.toFloats(), b.layers[l].v.toFloats());
        QCOMPARE(a.layers[l].o.toFloats(), b.layers[l].o.toFloats());
        QCOMPARE(a.layers[l].gate.toFloats(), b.layers[l].gate.toFloats());
        QCOMPARE(a.layers[l].up.toFloats(), b.layers[l].up.toFloats());
        QCOMPARE(a.layers[l].down.toFloats(), b.layers[l].down.toFloats());
        QVERIFY(a.layers[l].attnNorm == b.layers[l].attnNorm);
        QVERIFY(a.layers[l].ffnNorm == b.layers[l].ffnNorm);
    }
}

void TestGguf::everyPrefixIsAnError()
{
    const auto full = fileBytes(ggufPath());
    QCOMPARE(parseError(full), std::string());
    // Every prefix through the header (the first 16 KiB) and then every 997th byte through the data.
    std::vector<std::size_t> cuts;
    for (std::size_t n = 0; n < 16384; ++n)
        cuts.push_back(n);
    for (std::size_t n = 16384; n < full.size(); n += 997)
        cuts.push_back(n);
    cuts.push_back(full.size() - 1);
    for (std::size_t n : cuts) {
        // A fresh exact-size buffer, so that a read past the end is a read past the allocation.
        const std::vector<std::uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
        const std::string message = parseError(prefix);
        if (message.empty())
            QFAIL(qPrintable(QString("prefix of %1 bytes parsed").arg(n)));
        if (message.rfind("/x/case.gguf: ", 0) != 0 || message.find('\n') != std::string::npos)
            QFAIL(message.c_str());
    }
    // And through the model loader on files, at a spread of offsets.
    const fs::path dir = test::scratchDir("prefixes");
    for (std::size_t n : {std::size_t(3), std::size_t(4), std::size_t(23), std::size_t(100), std::size_t(14152), std::size_t(14176),
                          full.size() / 2, full.size() - 4}) {
        const fs::path file = dir / "cut.gguf";
        writeBytes(file, std::vector<std::uint8_t>(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n)));
        const std::string message = loadError(file);
        QVERIFY2(message.rfind(file.string() + ": ", 0) == 0, message.c_str());
    }
}

void TestGguf::headerByteFlipsNeverCrash()
{
    // Flip each byte of the header (three ways) and parse: either a clean Error or a successful parse whose tensors
    // all lie inside the buffer.
    std::vector<std::uint8_t> bytes = fileBytes(ggufPath());
    const std::size_t headerEnd = 14176;
    int errors = 0;
    int parsed = 0;
    for (std::size_t i = 0; i < headerEnd; ++i) {
        const std::uint8_t original = bytes[i];
        for (std::uint8_t flip : {std::uint8_t(0xff), std::uint8_t(0x80), std::uint8_t(0x01)}) {
            bytes[i] = original ^ flip;
            try {
                const GgufFile g = GgufFile::parse(bytes.data(), bytes.size(), "flipped", nullptr);
                for (const auto& t : g.tensors())
                    QVERIFY(t.offset + t.bytes <= bytes.size());
                ++parsed;
            } catch (const Error&) {
                ++errors;
            }
        }
        bytes[i] = original;
    }
    // Most flips of counts, lengths and types are fatal; flips inside token strings are harmless.
    QVERIFY(errors > 100);
    QVERIFY(parsed > 100);
}

void TestGguf::tinyFileParses()
{
    const auto bytes = tinyBuilder().build();
    const GgufFile g = GgufFile::parse(bytes.data(), bytes.size(), "tiny", nullptr);
    QCOMPARE(g.tensor("a")->shape(), std::vector<std::int64_t>({2, 3}));
    QCOMPARE(g.tensor("a")->toFloats(), std::vector<float>({1, 2, 3, 4, 5, 6}));
    QCOMPARE(g.tensor("h")->toFloats(), std::vector<float>({1.0f, -2.0f}));
    QVERIFY(g.tensor("h")->dtype() == DType::F16);

    // A custom power-of-two alignment is honoured for the data section and the offsets.
    GgufBuilder b = tinyBuilder();
    b.alignment = 64;
    b.u32("general.alignment", 64);
    const auto aligned = b.build();
    const GgufFile g64 = GgufFile::parse(aligned.data(), aligned.size(), "aligned", nullptr);
    QCOMPARE(g64.tensor("h")->toFloats(), std::vector<float>({1.0f, -2.0f}));

    // Version 2 is read too; BF16 tensors are supported.
    GgufBuilder v2 = tinyBuilder();
    v2.version = 2;
    v2.tensors.push_back({"bf", {2}, 30, {0x80, 0x3f, 0x40, 0xc0}, {}}); // 1.0, -3.0
    const auto v2bytes = v2.build();
    const GgufFile g2 = GgufFile::parse(v2bytes.data(), v2bytes.size(), "v2", nullptr);
    QCOMPARE(g2.version(), 2u);
    QCOMPARE(g2.tensor("bf")->toFloats(), std::vector<float>({1.0f, -3.0f}));
}

void TestGguf::lyingFields_data()
{
    QTest::addColumn<QByteArray>("bytes");
    QTest::addColumn<QString>("expected");
    auto add = [](const char* name, const GgufBuilder& b, const char* expected) {
        const auto v = b.build();
        QTest::newRow(name) << QByteArray(reinterpret_cast<const char*>(v.data()), static_cast<qsizetype>(v.size())) << QString(expected);
    };
    auto addRaw = [](const char* name, const std::vector<std::uint8_t>& v, const char* expected) {
        QTest::newRow(name) << QByteArray(reinterpret_cast<const char*>(v.data()), static_cast<qsizetype>(v.size())) << QString(expected);
    };
    const GgufBuilder base = tinyBuilder();
    GgufBuilder b;

    addRaw("empty", {}, "missing the GGUF magic");
    addRaw("magic only", {'G', 'G', 'U', 'F'}, "truncated: version");
    b = base; b.magic = "GGML"; add("wrong magic", b, "missing the GGUF magic");
    b = base; b.version = 1; add("version 1", b, "GGUF version 1 is not supported");
    b = base; b.version = 0xffffffffu; add("version huge", b, "is not supported");
    b = base; b.tensorCountOverride = 1ull << 60; add("tensor count huge", b, "claims 1152921504606846976 tensors, more than the file can hold");
    b = base; b.kvCountOverride = ~0ull; add("kv count huge", b, "metadata entries, more than the file can hold");
    b = base; b.kvCountOverride = 2; add("kv count one too many", b, "");
    b = base; b.tensorCountOverride = 3; add("tensor count one too many", b, "");

    {
        b = base;
        std::vector<std::uint8_t> v;
        put<std::uint64_t>(v, 1ull << 62);
        b.raw("s", 8, v);
        add("string length huge", b, "truncated: string value of 4611686018427387904 bytes");
    }
    {
        // The key's own length lies.
        std::vector<std::uint8_t> v = {'G', 'G', 'U', 'F'};
        put<std::uint32_t>(v, 3);
        put<std::uint64_t>(v, 0);
        put<std::uint64_t>(v, 1);
        put<std::uint64_t>(v, ~0ull - 3);
        v.resize(v.size() + 40, 'k');
        addRaw("key length huge", v, "truncated: metadata key");
    }
    b = base; b.raw("t", 13, {0, 0, 0, 0}); add("unknown value type", b, "metadata 't' has unknown value type 13");
    b = base; b.raw("t", 0xffffffffu, {}); add("value type huge", b, "unknown value type 4294967295");
    {
        b = base;
        std::vector<std::uint8_t> v;
        put<std::uint32_t>(v, 4); // u32 elements
        put<std::uint64_t>(v, 1ull << 61);
        b.raw("arr", 9, v);
        add("array count huge", b, "metadata 'arr' claims 2305843009213693952 array elements");
    }
    {
        b = base;
        std::vector<std::uint8_t> v;
        put<std::uint32_t>(v, 8); // string elements, each needs >= 8 bytes
        put<std::uint64_t>(v, 1000000);
        b.raw("arr", 9, v);
        add("string array count huge", b, "more than the file can hold");
    }
    {
        b = base;
        std::vector<std::uint8_t> v;
        put<std::uint32_t>(v, 77);
        put<std::uint64_t>(v, 1);
        b.raw("arr", 9, v);
        add("array of unknown type", b, "unknown value type 77");
    }
    {
        b = base;
        std::vector<std::uint8_t> v;
        for (int depth = 0; depth < 6; ++depth) {
            put<std::uint32_t>(v, 9);
            put<std::uint64_t>(v, 1);
        }
        put<std::uint32_t>(v, 4);
        put<std::uint64_t>(v, 0);
        b.raw("deep", 9, v);
        add("arrays nested too deeply", b, "metadata 'deep' nests arrays too deeply");
    }
    b = base; b.raw("flag", 7, {2}); add("bool value 2", b, "boolean metadata value 2");
    b = base; b.str("general.architecture", "again"); add("duplicate key", b, "metadata key 'general.architecture' appears twice");
    b = base; b.tensors[0].dims = {}; add("zero dims", b, "tensor 'a' has 0 dimensions (1 to 4 allowed)");
    b = base; b.tensors[0].dims = {1, 1, 1, 1, 6}; add("five dims", b, "tensor 'a' has 5 dimensions");
    b = base; b.tensors[0].dims = {1ull << 32, 1ull << 32, 1024}; add("dims overflow", b, "size overflow in tensor shape");
    b = base; b.tensors[0].dims = {1ull << 31, 1ull << 30}; add("dims beyond file", b, "tensor 'a' data [0, +9223372036854775808) runs past");
    b = base; b.tensors[0].dims = {1ull << 30, 1ull << 30}; add("dims 2^60 beyond file", b, "runs past the end of the file");
    // Quantised types are read (tst_ggml_quants), but their rows must be whole blocks; IQ types are not read.
    b = base; b.tensors[0].type = 2; add("quantised Q4_0", b, "tensor 'a' has rows of 3 values, not a multiple of Q4_0's block of 32");
    b = base; b.tensors[0].type = 14; add("quantised Q6_K", b, "tensor 'a' has rows of 3 values, not a multiple of Q6_K's block of 256");
    b = base; b.tensors[0].type = 16; add("IQ2_XXS", b, "unsupported tensor type IQ2_XXS in tensor 'a'");
    b = base; b.tensors[0].type = 99; add("unknown type", b, "unsupported tensor type #99 in tensor 'a'");
    b = base; b.tensors[1].offset = 36; add("misaligned offset", b, "tensor 'h' offset 36 is not aligned to 32");
    b = base; b.tensors[1].offset = 1ull << 40; b.tensors[1].data.clear(); add("offset beyond", b, "tensor 'h' data [1099511627776, +4) runs past the end of the file");
    b = base; b.tensors[1].offset = ~0ull - 31; b.tensors[1].data.clear(); add("offset near 2^64", b, "runs past the end of the file");
    {
        b = base;
        b.tensors[1].offset = 0;
        b.tensors[0].data.resize(32);
        add("overlapping tensors", b, "overlap");
    }
    b = base; b.tensors[1].name = "a"; add("duplicate tensor", b, "tensor 'a' appears twice");
    b = base; b.u32("general.alignment", 48); add("alignment not power of two", b, "general.alignment must be a power of two");
    b = base; b.u32("general.alignment", 0); add("alignment zero", b, "general.alignment must be a power of two");
    b = base; b.str("general.alignment", "32"); add("alignment wrong type", b, "general.alignment must be a power of two");
    {
        // Header ends but the data section (which must start at the next multiple of 32) is cut off.
        auto v = base.build();
        v.resize(v.size() - 30);
        addRaw("data cut", v, "runs past the end of the file");
    }
    {
        // A tensor name of 30 bytes announced where 21 remain.
        std::vector<std::uint8_t> v;
        put<std::uint64_t>(v, 30);
        v.push_back('n');
        GgufBuilder d = base;
        d.tensors.clear();
        d.tensorCountOverride = 1;
        d.alignment = 1; // no padding after the metadata
        auto head = d.build();
        head.insert(head.end(), v.begin(), v.end());
        head.resize(head.size() + 20, 0);
        addRaw("tensor name truncated", head, "truncated: tensor name of 30 bytes");
    }
}

void TestGguf::lyingFields()
{
    QFETCH(QByteArray, bytes);
    QFETCH(QString, expected);
    const std::vector<std::uint8_t> v(bytes.begin(), bytes.end());
    const std::string message = parseError(v);
    QVERIFY2(!message.empty(), "lying file was accepted");
    QVERIFY2(message.rfind("/x/case.gguf: ", 0) == 0, message.c_str());
    QVERIFY2(message.find('\n') == std::string::npos, message.c_str());
    QVERIFY2(message.find(expected.toStdString()) != std::string::npos, message.c_str());

    // Through a file and the model loader: exit path of the CLI. Files that do not start with GGUF are taken for
    // llama2.c checkpoints by content; they must still fail with the file named.
    const fs::path file = test::scratchDir("lying") / "case.gguf";
    writeBytes(file, v);
    const std::string fromLoader = loadError(file);
    QVERIFY2(fromLoader.rfind(file.string() + ": ", 0) == 0, fromLoader.c_str());
    if (v.size() >= 4 && std::memcmp(v.data(), "GGUF", 4) == 0)
        QVERIFY2(fromLoader.find(expected.toStdString()) != std::string::npos, fromLoader.c_str());
}

void TestGguf::reserialisedRealFileIsIdentical()
{
    // The test's own writer reproduces the real file's content: same metadata, same tensors, same logits. This
    // validates the model-level error cases below, which are edits of this re-serialisation.
    const GgufFile g = GgufFile::open(ggufPath());
    const auto keys = realKeyOrder();
    QCOMPARE(keys.size(), std::size_t(19));
    const auto rebuilt = builderFrom(g, keys).build();
    const auto original = fileBytes(ggufPath());
    QCOMPARE(rebuilt.size(), original.size());
    QVERIFY(rebuilt == original);
}

void TestGguf::modelLevelErrors()
{
    const GgufFile g = GgufFile::open(ggufPath());
    const GgufBuilder base = builderFrom(g, realKeyOrder());
    const fs::path dir = test::scratchDir("model");
    const std::vector<int> ids = {1, 403, 407, 261, 378, 434, 342, 414, 260, 428};
    const MatrixRM reference = logitsOf(loadModel(ggufPath()), ids);

    struct Case {
        const char* name;
        std::function<void(GgufBuilder&)> edit;
        const char* expected; // "" = loads
    };
    const Case cases[] = {
        {"unchanged", [](GgufBuilder&) {}, ""},
        {"no architecture", [](GgufBuilder& b) { b.remove("general.architecture"); }, "missing general.architecture"},
        {"gpt2 architecture", [](GgufBuilder& b) { b.remove("general.architecture"); b.str("general.architecture", "gpt2"); },
         "GGUF architecture 'gpt2' is not supported (supported: llama,"},
        {"no block count", [](GgufBuilder& b) { b.remove("llama.block_count"); }, "missing metadata llama.block_count"},
        {"no hidden size", [](GgufBuilder& b) { b.remove("llama.embedding_length"); }, "missing metadata llama.embedding_length"},
        {"hidden as string", [](GgufBuilder& b) { b.remove("llama.embedding_length"); b.str("llama.embedding_length", "64"); },
         "metadata llama.embedding_length must be an integer"},
        {"heads do not divide hidden", [](GgufBuilder& b) {
             b.remove("llama.attention.head_count");
             b.remove("llama.rope.dimension_count");
             b.u32("llama.attention.head_count", 6);
         },
         "6 attention heads do not divide llama.embedding_length 64"},
        {"kv heads do not divide", [](GgufBuilder& b) { b.remove("llama.attention.head_count_kv"); b.u32("llama.attention.head_count_kv", 3); },
         "3 key/value heads do not divide 8 attention heads"},
        {"odd head size", [](GgufBuilder& b) { b.remove("llama.rope.dimension_count"); b.u32("llama.attention.key_length", 7); },
         "head size 7 is odd"},
        {"zero heads", [](GgufBuilder& b) { b.remove("llama.attention.head_count"); b.u32("llama.attention.head_count", 0); },
         "must be positive"},
        {"huge layers", [](GgufBuilder& b) { b.remove("llama.block_count"); b.u32("llama.block_count", 4000000000u); },
         "implausibly large"},
        {"partial rope", [](GgufBuilder& b) { b.remove("llama.rope.dimension_count"); b.u32("llama.rope.dimension_count", 4); },
         "partial rotary embeddings are not supported"},
        {"yarn scaling", [](GgufBuilder& b) { b.str("llama.rope.scaling.type", "yarn"); }, "rope.scaling.type 'yarn' is not supported"},
        {"bad eps", [](GgufBuilder& b) { b.remove("llama.attention.layer_norm_rms_epsilon"); b.f32("llama.attention.layer_norm_rms_epsilon", -1.0f); },
         "rms_norm_eps"},
        {"bos outside vocab", [](GgufBuilder& b) { b.remove("tokenizer.ggml.bos_token_id"); b.u32("tokenizer.ggml.bos_token_id", 600); },
         "bos token id 600 is outside the vocabulary"},
        {"missing q", [](GgufBuilder& b) { std::erase_if(b.tensors, [](auto& t) { return t.name == "blk.3.attn_q.weight"; }); },
         "missing tensor 'blk.3.attn_q.weight' (query projection)"},
        {"missing embedding", [](GgufBuilder& b) { std::erase_if(b.tensors, [](auto& t) { return t.name == "token_embd.weight"; }); },
         "missing tensor 'token_embd.weight'"},
        {"wrong shape", [](GgufBuilder& b) { b.tensor("blk.0.ffn_gate.weight")->dims = {172, 64}; },
         "tensor 'blk.0.ffn_gate.weight' has wrong shape; expected [172, 64], got [64, 172]"},
        {"wrong kv shape", [](GgufBuilder& b) { b.tensor("blk.2.attn_k.weight")->dims = {64, 16}; b.tensor("blk.2.attn_k.weight")->data.resize(64 * 16 * 4); },
         "tensor 'blk.2.attn_k.weight' has wrong shape; expected [32, 64], got [16, 64]"},
        {"unsupported quantisation", [](GgufBuilder& b) { b.tensor("blk.1.attn_v.weight")->type = 16; },
         "unsupported tensor type IQ2_XXS in tensor 'blk.1.attn_v.weight' (supported: F32, F16, BF16, Q8_0"},
        {"vocab mismatch", [](GgufBuilder& b) { b.u32("llama.vocab_size", 500); },
         "tensor 'token_embd.weight' has wrong shape; expected [500, 64], got [512, 64]"},
    };
    for (const Case& c : cases) {
        GgufBuilder b = base;
        c.edit(b);
        const fs::path file = dir / (std::string(c.name) + ".gguf");
        writeBytes(file, b.build());
        const std::string message = loadError(file);
        if (std::string(c.expected).empty()) {
            QVERIFY2(message.empty(), (std::string(c.name) + ": " + message).c_str());
            const MatrixRM logits = logitsOf(loadModel(file), ids);
            QVERIFY(logits == reference);
            continue;
        }
        QVERIFY2(message.rfind(file.string() + ": ", 0) == 0, (std::string(c.name) + ": " + message).c_str());
        QVERIFY2(message.find(c.expected) != std::string::npos, (std::string(c.name) + ": " + message).c_str());
        QVERIFY2(message.find('\n') == std::string::npos, message.c_str());
    }
}

QTEST_GUILESS_MAIN(TestGguf)
#include "tst_gguf.moc"
