// Prepares the check of our CPU forward against Hugging Face transformers (docs/hf-parity.md): writes a tiny random
// checkpoint of every architecture (tests/tools/hf_parity_shapes.h) into OUT/<name>/, and next to each our CPU logits
// for the parity id sequence (logits.f32, float32 [tokens, vocab] row-major; ids.txt). With --model NAME=PATH, also
// our logits for an existing Hugging Face folder (written to OUT/NAME/, the folder's path in source.txt).
// tests/tools/hf_parity.py then runs transformers on the same folders and compares. Also the bundled demo model
// converted to the DeepSeek-V3 layout (--target deepseek-v3, docs/deepseek-export.md) as OUT/stories260K-deepseek-v3,
// which stock transformers loads as DeepseekV3ForCausalLM.
//   hf_parity_prepare OUT [--model NAME=PATH]...
#include "backend/compute_backend.h"
#include "conversion/converter.h"
#include "conversion/deepseek_converter.h"
#include "model/model_loader.h"
#include "util/error.h"

#include "hf_parity_shapes.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

namespace fs = std::filesystem;
using namespace mla;

namespace {

void writeLogits(const Model& model, const fs::path& folder)
{
    const Transformer t(model);
    const std::vector<int> ids = test::paritySequence();
    KvCache cache = t.newCache(static_cast<std::int64_t>(ids.size()));
    const MatrixRM logits = t.forward(ids, cache, Logits::All);
    fs::create_directories(folder);
    std::ofstream out(folder / "logits.f32", std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), static_cast<std::streamsize>(logits.size() * sizeof(float)));
    std::ofstream idsOut(folder / "ids.txt");
    for (std::size_t i = 0; i < ids.size(); ++i)
        idsOut << (i ? " " : "") << ids[i];
    idsOut << "\n";
    std::printf("%s: logits [%lld, %lld]\n", folder.string().c_str(), static_cast<long long>(logits.rows()),
                static_cast<long long>(logits.cols()));
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        std::fprintf(stderr, "usage: hf_parity_prepare OUT [--model NAME=PATH]...\n");
        return 2;
    }
    try {
        const fs::path out = argv[1];
        fs::create_directories(out);
        for (const SyntheticShape& shape : test::tinyShapes()) {
            const fs::path folder = out / shape.name;
            test::writeTinyCheckpoint(shape, folder, DType::F32);
            writeLogits(loadModel(folder), folder);
        }
        {
            const Model demo = loadModel(fs::path(MLA_DEMO_DIR) / "stories260K.bin");
            ConversionSettings settings;
            settings.target = ConversionTarget::DeepSeekV3;
            CalibrationOptions calibration;
            calibration.samples = 4;
            calibration.sequenceLength = 64;
            const CalibrationSet set = prepareCalibration(cpuBackend(), Transformer(demo), nullptr, calibration);
            ExportOptions e;
            e.folder = out / "stories260K-deepseek-v3";
            exportModel(convertToDeepSeek(cpuBackend(), demo, settings, set).model, e);
            writeLogits(loadModel(e.folder), e.folder);
        }
        for (int i = 2; i + 1 < argc; i += 2) {
            if (std::string(argv[i]) != "--model")
                throw Error(std::string("unknown argument ") + argv[i]);
            const std::string spec = argv[i + 1];
            const auto eq = spec.find('=');
            if (eq == std::string::npos)
                throw Error("--model expects NAME=PATH");
            const fs::path folder = out / spec.substr(0, eq);
            const fs::path source = spec.substr(eq + 1); // as given (relative paths stay relative)
            writeLogits(loadModel(source), folder);
            std::ofstream(folder / "source.txt") << source.string() << "\n";
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hf_parity_prepare: %s\n", e.what());
        return 1;
    }
    return 0;
}
