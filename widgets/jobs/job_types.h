#pragma once

#include "analysis/analysis_result.h"
#include "conversion/converter.h"
#include "conversion/sanity_check.h"
#include "conversion/sequential_converter.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

#include <QMetaType>
#include <QString>
#include <QStringList>

#include <memory>
#include <vector>

namespace mla {

// Results of the workbench's jobs: plain values (shared, immutable payloads), registered as metatypes so that they
// can cross threads in queued signals and travel in QVariants.

struct LoadedModel {
    std::shared_ptr<const Model> model;
    std::shared_ptr<const Tokenizer> tokenizer; // null when none was found (the model still opens)
    QString tokenizerSource;                   // file path, "embedded (GGUF)" or empty
    QStringList warnings;                      // e.g. a tokenizer next to the model that could not be read
};

using AnalysisPtr = std::shared_ptr<const AnalysisResult>;

struct ConversionOutcome {
    std::shared_ptr<const Model> converted;
    ConversionPlan plan;
    std::vector<LayerConversionReport> reports; // plain conversion: weight-space errors per layer
    std::vector<LayerFitReport> fits;           // sequential conversion: measured output errors per layer
    double seconds = 0.0;
};

struct ExportOutcome {
    QString folder;
    ExportReport report;
};

void registerJobMetaTypes();

} // namespace mla

Q_DECLARE_METATYPE(mla::LoadedModel)
Q_DECLARE_METATYPE(mla::AnalysisPtr)
Q_DECLARE_METATYPE(mla::ConversionOutcome)
Q_DECLARE_METATYPE(mla::ExportOutcome)
Q_DECLARE_METATYPE(mla::SanityReport)
