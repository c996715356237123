#include "common/deepseek_fixtures.h"

#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "model/model_loader.h"
#include "model/tensor_plan.h"
#include "numerics/random_fill.h"

#include <QProcess>
#include <QStringList>

#include <fstream>

namespace mla::test {

Model randomDeepSeekModel(const DeepSeekShape& s, std::uint64_t seed)
{
    ModelConfig c;
    c.architecture = s.architecture;
    c.hidden = s.hidden;
    c.ffn = s.ffn;
    c.layers = s.layers;
    c.heads = s.heads;
    c.kvHeads = s.heads;
    c.headDim = s.nope + s.rope;
    c.vocab = s.vocab;
    c.maxPositions = s.maxPositions;
    c.rmsEps = 1e-6;
    c.rope = s.ropeConfig;
    c.tieEmbeddings = false;
    c.outputBias = s.bias;
    c.bosId = 1;
    c.eosIds = {2};
    DeepSeekAttentionConfig a;
    a.kvLoraRank = s.kvLora;
    a.qLoraRank = s.qLora;
    a.ropeDim = s.rope;
    a.nopeDim = s.nope;
    a.valueDim = s.value;
    a.ropeInterleave = s.architecture == "deepseek_v2" ? true : s.interleave;
    a.attentionBias = s.bias;
    a.yarnMscaleInScale = s.architecture == "deepseek_v3";
    c.deepseek = a;
    return randomModel(c, seed);
}

Model randomModel(const ModelConfig& c, std::uint64_t seed)
{
    c.validate("fixture");
    Model m;
    m.config = c;
    m.layers.resize(static_cast<std::size_t>(c.layers));
    m.format = "safetensors";
    std::uint64_t stream = 0;
    for (const PlannedTensor& p : tensorPlan(c)) {
        const std::int64_t rows = p.shape[0];
        const std::int64_t cols = p.shape.size() > 1 ? p.shape[1] : 1;
        MatrixRM values(rows, cols);
        fillGaussian(values, seed, stream);
        stream += static_cast<std::uint64_t>(cols) + 1;
        if (isVectorRole(p.role)) {
            const bool norm = p.role == TensorRole::AttnNorm || p.role == TensorRole::FfnNorm || p.role == TensorRole::OutputNorm
                              || p.role == TensorRole::KvANorm || p.role == TensorRole::QANorm;
            values = norm ? MatrixRM((values.array() * 0.1f + 1.0f).matrix()) : MatrixRM(values * 0.1f);
        } else {
            values *= 1.0f / std::sqrt(static_cast<float>(p.role == TensorRole::Embedding ? 1 : cols));
        }
        setModelTensor(m, p.role, p.layer, p.shape.size() > 1 ? Tensor::fromMatrix(values) : Tensor::fromVector(values.col(0)));
    }
    if (c.tieEmbeddings)
        m.output = m.embedding;
    return m;
}

void writeReferenceFixture(const Model& model, const std::filesystem::path& folder, const std::vector<int>& ids)
{
    ExportOptions e;
    e.folder = folder;
    exportModel(model, e);
    const Transformer t(loadModel(folder));
    const MatrixRM logits = sequenceLogits(t, ids);
    std::ofstream idsOut(folder / "ids.txt");
    for (int id : ids)
        idsOut << id << ' ';
    idsOut << '\n';
    std::ofstream out(folder / "logits.f32", std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
}

// Debian's /usr/bin/python3 explicitly: a python3 earlier on PATH may be another installation without numpy.
constexpr const char* kPython = "/usr/bin/python3";

bool runDeepSeekReference(const std::vector<std::filesystem::path>& folders, std::string& output, bool& skipped)
{
    skipped = false;
    QProcess probe;
    probe.start(QString::fromLatin1(kPython), {QStringLiteral("-c"), QStringLiteral("import numpy")});
    if (!probe.waitForStarted(10000) || !probe.waitForFinished(60000) || probe.exitCode() != 0) {
        skipped = true;
        output = "/usr/bin/python3 with numpy is not available (packaging/install-deps.sh installs python3-numpy)";
        return false;
    }
    QStringList args{QString::fromStdString((sourceDir() / "tools" / "deepseek_reference.py").string())};
    for (const auto& f : folders)
        args << QString::fromStdString(f.string());
    QProcess process;
    process.setProcessChannelMode(QProcess::MergedChannels);
    process.start(QString::fromLatin1(kPython), args);
    const bool finished = process.waitForStarted(10000) && process.waitForFinished(600000);
    output = process.readAll().toStdString();
    return finished && process.exitStatus() == QProcess::NormalExit && process.exitCode() == 0;
}

} // namespace mla::test
