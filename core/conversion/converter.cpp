#include "conversion/converter.h"

#include "backend/compute_backend.h"
#include "conversion/deepseek_export.h"
#include "conversion/layer_pipeline.h"
#include "conversion/pytorch_export.h"
#include "formats/checkpoint_writer.h"
#include "model/architecture.h"
#include "model/model_files.h"
#include "model/tensor_plan.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/memory_budget.h"
#include "util/version.h"

#include <algorithm>
#include <set>

namespace mla {
namespace {

Tensor store(const MatrixRM& m, DType dtype)
{
    return Tensor::fromFloats(dtype, {m.rows(), m.cols()}, m.data());
}

VectorF roundTo(const VectorF& v, DType dtype)
{
    if (dtype == DType::F32 || v.size() == 0)
        return v;
    return Tensor::fromFloats(dtype, {v.size()}, v.data()).toVector();
}

// A finished layer's weights are not read again: drop their pages from this process's resident memory.
void releaseLayerPages(const LayerWeights& w)
{
    for (const Tensor* t : {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down})
        if (!t->empty())
            MappedFile::releasePages(t->data(), t->bytes());
}

LayerConversionReport reportOf(const ConvertedAttention& a)
{
    return {a.jointRelativeError, a.keyRelativeError, a.valueRelativeError};
}

DType weightDtype(const Model& model)
{
    return model.layers.empty() ? model.embedding.dtype() : model.layers[0].q.dtype();
}

nlohmann::ordered_json mha2mlaBlock(const ModelConfig& converted)
{
    const MlaConfig& m = *converted.mla;
    nlohmann::ordered_json b;
    std::set<std::int64_t> pairCounts, latentKs;
    nlohmann::ordered_json kept = nlohmann::ordered_json::array();
    nlohmann::ordered_json latentK = nlohmann::ordered_json::array();
    nlohmann::ordered_json latentV = nlohmann::ordered_json::array();
    for (const auto& layer : m.layers) {
        pairCounts.insert(layer.ropePairs());
        latentKs.insert(layer.latentK);
        kept.push_back(layer.keptPairs);
        latentK.push_back(layer.latentK);
        latentV.push_back(layer.latentV);
    }
    const LatentMethod method = m.layers.empty() ? LatentMethod::Joint : m.layers[0].method;
    b["base_model_type"] = converted.architecture;
    b["partial_rope_version"] = m.partialRopeVersion;
    b["rope_dim_for_mla"] = pairCounts.size() == 1 ? nlohmann::ordered_json(2 * *pairCounts.begin()) : nlohmann::ordered_json();
    b["uniform_start_point"] = m.uniformStartPoint;
    b["svd_init_method"] = std::string(latentMethodPublicName(method));
    // low_rank is the public code's d_kv (latent per KV head); only meaningful when one width serves every layer.
    const bool uniformLatent = latentKs.size() == 1 && *latentKs.begin() % converted.kvHeads == 0;
    b["low_rank"] = uniformLatent && method != LatentMethod::Split ? nlohmann::ordered_json(*latentKs.begin() / converted.kvHeads)
                                                                    : nlohmann::ordered_json();
    b["latent_dims"] = latentK;
    b["latent_dims_v"] = latentV;
    b["rope_pairs_kept"] = kept;
    b["rope_pair_layout"] = "pair j = dims (j, j + head_dim/2) of a head (Hugging Face half layout)";
    b["sigma_placement"] = m.sigmaPlacement;
    b["activation_aware"] = m.activationAware;
    b["preset"] = m.preset;
    b["tool"] = std::string(kToolName);
    b["tool_version"] = std::string(kVersion);
    return b;
}

} // namespace

void installConverted(LayerWeights& w, const ConvertedAttention& a, DType dtype)
{
    w.q = store(a.q, dtype);
    w.qBias = roundTo(a.qBias, dtype);
    w.k = Tensor();
    w.v = Tensor();
    w.kBias = w.vBias = VectorF();
    w.kRope = a.kRope.rows() > 0 ? store(a.kRope, dtype) : Tensor();
    w.kRopeBias = roundTo(a.kRopeBias, dtype);
    w.downKv = a.downKv.size() > 0 ? store(a.downKv, dtype) : Tensor();
    w.downK = a.downK.size() > 0 ? store(a.downK, dtype) : Tensor();
    w.downV = a.downV.size() > 0 ? store(a.downV, dtype) : Tensor();
    w.upK = a.upK.rows() > 0 ? store(a.upK, dtype) : Tensor();
    w.upV = store(a.upV, dtype);
    w.upKBias = roundTo(a.upKBias, dtype);
    w.upVBias = roundTo(a.upVBias, dtype);
}

std::vector<LayerPairSelection> selectPairs(const ModelConfig& c, const ConversionSettings& settings, const AnalysisResult* analysis)
{
    std::vector<LayerPairSelection> selections;
    for (std::int64_t l = 0; l < c.layers; ++l) {
        const LayerRopeScores* scores = analysis ? &analysis->layers[static_cast<std::size_t>(l)].scores : nullptr;
        if (ropeStrategyNeedsScores(settings.strategy) && !scores)
            throw Error("the " + std::string(ropeStrategyName(settings.strategy)) + " strategy needs a calibration analysis");
        selections.push_back(selectLayerPairs(c, settings.strategy, ropePairsForLayer(c, settings, l), settings.uniformStart, scores));
    }
    return selections;
}

ConversionPlan planConversion(const ModelConfig& original, const ConversionSettings& settings,
                              const std::vector<LayerPairSelection>& selections)
{
    ConversionPlan plan;
    plan.original = original;
    plan.settings = settings;
    plan.converted = original;
    MlaConfig mla;
    mla.layers = resolveLayerConfigs(original, settings, selections);
    mla.partialRopeVersion = std::string(ropeStrategyName(settings.strategy));
    mla.uniformStartPoint = static_cast<int>(settings.uniformStart);
    mla.sigmaPlacement = std::string(sigmaPlacementName(settings.sigma));
    mla.activationAware = settings.activationAware;
    mla.preset = settings.preset;
    mla.toolVersion = kVersion;
    plan.converted.mla = std::move(mla);
    plan.converted.validate("conversion settings");
    return plan;
}

Model convertModel(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const CovarianceProvider& covariance, DType storage,
                   const JobControl& job, std::vector<LayerConversionReport>* reports)
{
    // The converted attention tensors of every layer are held in memory (everything else stays shared with the
    // original): refuse up front when they cannot fit.
    std::uint64_t convertedBytes = 0;
    for (const PlannedTensor& p : tensorPlan(plan.converted)) {
        switch (p.role) {
        case TensorRole::Q: case TensorRole::KRope: case TensorRole::DownKv: case TensorRole::DownK:
        case TensorRole::DownV: case TensorRole::UpK: case TensorRole::UpV: {
            std::uint64_t n = dtypeSize(storage);
            for (std::int64_t d : p.shape)
                n *= static_cast<std::uint64_t>(d);
            convertedBytes += n;
            break;
        }
        default:
            break;
        }
    }
    requireMemory(convertedBytes, "holding the converted attention of " + std::to_string(plan.original.layers) + " layers",
                  original.source);
    Model model = original;
    model.config = plan.converted;
    for (std::int64_t l = 0; l < plan.original.layers; ++l) {
        job.progress(static_cast<double>(l) / static_cast<double>(plan.original.layers), "converting layer " + std::to_string(l));
        const MatrixXdRM* c = covariance ? covariance(l) : nullptr;
        const ConvertedAttention a = convertAttention(backend, plan.original, original.layers[static_cast<std::size_t>(l)],
                                                      plan.converted.mla->layers[static_cast<std::size_t>(l)], plan.settings, c, job);
        installConverted(model.layers[static_cast<std::size_t>(l)], a, storage);
        if (reports)
            reports->push_back(reportOf(a));
    }
    job.progress(1.0, "converted");
    return model;
}

nlohmann::ordered_json convertedConfigJson(const Model& original, const ModelConfig& converted)
{
    if (converted.deepseek)
        return deepSeekExportConfigJson(original, converted);
    nlohmann::ordered_json j;
    if (original.sourceConfigJson && original.sourceConfigJson->is_object())
        j = nlohmann::ordered_json::parse(original.sourceConfigJson->dump());
    const nlohmann::ordered_json generated = configToHuggingFace(converted);
    for (auto it = generated.begin(); it != generated.end(); ++it) {
        if (!j.contains(it.key()))
            j[it.key()] = it.value();
    }
    if (converted.mla) {
        nameMlaArchitecture(j);
        j["mha2mla"] = mha2mlaBlock(converted);
    } else {
        j.erase("mha2mla");
        j.erase("auto_map");
        j["model_type"] = converted.architecture;
        j["architectures"] = nlohmann::ordered_json::array({std::string(architectureInfo(converted.architecture).hfClass)});
    }
    return j;
}

std::vector<std::filesystem::path> companionFiles(const Model& model, std::vector<std::string>* skipped)
{
    namespace fs = std::filesystem;
    std::error_code ec;
    fs::path folder = fs::is_directory(model.source, ec) ? model.source : model.source.parent_path();
    if (folder.empty())
        folder = ".";
    const fs::path realFolder = fs::weakly_canonical(fs::absolute(folder, ec), ec);
    // Inside the model folder, after resolving every symbolic link on the way.
    auto insideFolder = [&](const fs::path& p) {
        std::error_code e;
        const fs::path real = fs::canonical(p, e);
        if (e)
            return false;
        auto [f, r] = std::mismatch(realFolder.begin(), realFolder.end(), real.begin(), real.end());
        return f == realFolder.end() && r != real.end();
    };
    std::vector<fs::path> files;
    auto consider = [&](const fs::path& p) {
        std::error_code e;
        const fs::file_status link = fs::symlink_status(p, e);
        if (e || !fs::exists(link) || std::find(files.begin(), files.end(), p) != files.end())
            return;
        if (!fs::is_regular_file(p, e)) {
            if (skipped)
                skipped->push_back(p.string() + ": not a regular file, not copied");
            return;
        }
        if (!insideFolder(p)) {
            if (skipped)
                skipped->push_back(p.string() + ": a symbolic link to a file outside the model folder, not copied");
            return;
        }
        files.push_back(p);
    };
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                             "generation_config.json", "added_tokens.json", "vocab.json", "merges.txt"})
        consider(folder / name);
    if (auto tok = findTokenizerNextTo(model.source))
        consider(*tok);
    return files;
}

ExportReport writeModelWith(const Model& source, const ModelConfig& targetConfig, const ExportOptions& options,
                            const std::function<Tensor(const PlannedTensor&)>& tensorFor, const JobControl& job)
{
    ExportReport report;
    report.dtype = options.dtype.value_or(weightDtype(source));
    OutputOptions output = options.output;
    for (const auto& f : modelInputFiles(source))
        output.inputs.push_back(f);
    output.inputs.insert(output.inputs.end(), options.extraFiles.begin(), options.extraFiles.end());
    CheckpointWriter writer(options.folder, targetConfig, convertedConfigJson(source, targetConfig), report.dtype,
                            options.shardBytes, output);
    writer.writeTensors([&](const PlannedTensor& p, const std::string&) { return tensorFor(p); }, job);
    for (const auto& f : options.extraFiles)
        writer.copyFile(f, f.filename().string());
    for (const auto& [name, content] : options.generatedFiles)
        writer.addFile(name, content);
    // An MLA export runs and trains in PyTorch with the files it carries (config.json names them through auto_map).
    if (targetConfig.isMla()) {
        for (const auto& [name, content] : pytorchExportFiles())
            writer.addFile(name, content);
    }
    writer.commit();
    report.bytesWritten = writer.bytesWritten();
    report.shards = writer.shardCount();
    return report;
}

ExportReport exportConvertedModel(const ComputeBackend& backend, const Model& original, const ConversionPlan& plan, const ExportOptions& options,
                                  const CovarianceProvider& covariance, const JobControl& job)
{
    // The writer asks for tensors in plan order (layer by layer); the pipeline hands it each layer's conversion,
    // made while the layer before was written, and the current layer's tensors go back to the original's views when
    // the next layer starts.
    Model current = original;
    current.config = plan.converted;
    std::int64_t convertedLayer = -1;
    std::vector<LayerConversionReport> reports;
    LayerPipeline<ConvertedAttention> pipeline(
        plan.original.layers, [&](std::int64_t l) { readLayerPages(original.layers[static_cast<std::size_t>(l)]); },
        [&](std::int64_t l, const JobControl& layerJob) {
            const MatrixXdRM* c = covariance ? covariance(l) : nullptr;
            return convertAttention(backend, plan.original, original.layers[static_cast<std::size_t>(l)],
                                    plan.converted.mla->layers[static_cast<std::size_t>(l)], plan.settings, c, layerJob);
        },
        job, options.pipelined);
    const double planSize = static_cast<double>(tensorPlan(plan.converted).size());
    std::size_t asked = 0;
    auto tensorFor = [&](const PlannedTensor& p) -> Tensor {
        const double fraction = static_cast<double>(asked++) / planSize; // the writer's own progress at this tensor
        if (p.layer >= 0 && p.layer != convertedLayer) {
            if (convertedLayer >= 0) {
                current.layers[static_cast<std::size_t>(convertedLayer)] = original.layers[static_cast<std::size_t>(convertedLayer)];
                releaseLayerPages(original.layers[static_cast<std::size_t>(convertedLayer)]);
            }
            convertedLayer = p.layer;
            const ConvertedAttention a = pipeline.take(p.layer, fraction);
            installConverted(current.layers[static_cast<std::size_t>(p.layer)], a, DType::F32);
            reports.push_back(reportOf(a));
        }
        return modelTensor(current, p.role, p.layer);
    };
    ExportReport report = writeModelWith(original, plan.converted, options, tensorFor, job);
    report.layers = std::move(reports);
    return report;
}

ExportReport exportModel(const Model& model, const ExportOptions& options, const JobControl& job)
{
    return writeModelWith(model, model.config, options, [&](const PlannedTensor& p) { return modelTensor(model, p.role, p.layer); }, job);
}

} // namespace mla
