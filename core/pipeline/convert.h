#pragma once

#include "conversion/budget_allocation.h"
#include "conversion/converter.h"
#include "conversion/decomposition_check.h"
#include "conversion/deepseek_converter.h"
#include "conversion/model_card.h"
#include "conversion/sequential_converter.h"
#include "pipeline/analyse.h"
#include "pipeline/check.h"
#include "pipeline/execution_context.h"
#include "pipeline/open_model.h"
#include "settings/settings.h"

#include <filesystem>
#include <memory>
#include <optional>
#include <vector>

namespace mla::pipeline {

// A conversion as it was made.
struct ConversionOutcome {
    std::shared_ptr<const Model> converted;     // convertInMemory: the converted model; convertToFolder: null
    ConversionPlan plan;                        // plan.settings: as converted, with an allocation filled in
    Settings requested;                         // the settings it was asked for
    AnalysisPtr analysis;                       // the scores and calibration it used (given or made for it); may be null
    std::optional<Allocation> allocation;       // when it allocated per layer first
    std::int64_t allocationBudget = 0;          // the budget of that allocation
    std::vector<LayerConversionReport> reports; // plain conversion: weight-space errors per layer
    std::vector<LayerFitReport> fits;           // sequential conversion: measured output errors per layer
    // --decomposition randomized: its first layer measured against the exact decomposition before the conversion.
    std::optional<DecompositionCheck> decompositionCheck;
    std::optional<HealCardInfo> heal;           // set when `converted` was healed after the conversion (pipeline/heal.h)
    // --target deepseek-v3 (docs/deepseek-export.md): what the conversion chose and measured; plan.converted is the
    // deepseek_v3 config and plan.converted.mla is unset. Null for the mha2mla target.
    std::shared_ptr<const DeepSeekDetails> deepSeek;
    double seconds = 0.0;
};

struct ExportRequest {
    std::filesystem::path folder;
    std::optional<DType> dtype;   // of the written weights; default: the original's
    std::uint64_t shardBytes = 0; // 0: one model.safetensors
    bool pipelined = true;        // overlap read, conversion and write across layers (ExportOptions::pipelined)
    // Where the folder may go (util/output_safety.h): `force` (the CLI's --force; the GUI asks first) and inputs
    // besides the opened model's own files, which are always added. Checked before any work and again when the
    // finished folder moves into place.
    OutputOptions output;
};

struct ExportOutcome {
    std::filesystem::path folder;
    ExportReport report;
    ModelCardInfo card;                // what README.md says
    std::optional<CheckOutcome> check; // convertToFolder with a check: measured on the weights as written
    std::vector<std::string> notes;    // companion files left out and why ("FILE: not a regular file, not copied")
};

// Every conversion entry point first checks the settings against the model (validateConversionSettings), so a bad
// value fails before any calibration, allocation or conversion work, in the CLI and the workbench alike.

// Convert (the workbench's Convert): the converted model in memory, ready for the check and the export. When
// `analysis` is null and the settings need one, the calibration is made first (calibrateForConversion); a pending
// allocation runs next (allocate, locks honoured); then the sequential conversion with refits when the settings need
// a calibration pass, else the plain one (attention stored in the original's dtype).
ConversionOutcome convertInMemory(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings,
                                  const ExecutionContext& context);

// Convert to a folder (CLI convert): the same steps, streaming layer by layer to `request.folder` (one layer's
// converted tensors in memory at a time), with the model card README.md and the original's tokenizer files. With
// `check`, the folder is reloaded and measured against the original, and README.md gains the numbers. The destination
// is checked (request.output) before any work.
struct FolderOutcome {
    ConversionOutcome conversion;
    ExportOutcome written;
};
FolderOutcome convertToFolder(const OpenedModel& model, AnalysisPtr analysis, const Settings& settings, const ExportRequest& request,
                              const std::optional<CheckOptions>& check, const ExecutionContext& context);

// Export (the workbench's Export): writes a conversion made in memory as the same folder convertToFolder writes, model
// card included. `measured` (a check of this conversion in memory) goes into the card, said to be measured before
// writing. The destination is checked (request.output) before anything is written.
ExportOutcome exportConversion(const OpenedModel& original, const ConversionOutcome& conversion, const ExportRequest& request,
                               const std::optional<CheckOutcome>& measured, const ExecutionContext& context);

// The output policy for an export of `model`: the request's, with every file the model was read from as an input.
OutputOptions outputFor(const OpenedModel& model, const ExportRequest& request);

// The check of an export as written: reloads `written.folder` (the weights exactly as written, dtype rounding
// included), measures it against the original, and rewrites its README.md with the numbers, atomically.
void checkWrittenExport(const OpenedModel& model, const CheckOptions& options, ExportOutcome& written, const ExecutionContext& context);

} // namespace mla::pipeline
