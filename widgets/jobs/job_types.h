#pragma once

#include "conversion/budget_allocation.h"
#include "pipeline/analyse.h"
#include "pipeline/check.h"
#include "pipeline/convert.h"
#include "pipeline/export_gguf.h"
#include "pipeline/heal.h"
#include "pipeline/open_model.h"
#include "pipeline/sessions.h"
#include "settings/settings.h"

#include <QMetaType>

namespace mla {

// The results of the workbench's jobs are core's pipeline values (shared, immutable payloads), registered as
// metatypes so that they cross threads in queued signals and travel in QVariants.
using pipeline::AnalysisPtr;
using pipeline::CheckOptions;
using pipeline::CheckOutcome;
using pipeline::ConversionOutcome;
using pipeline::ExportOutcome;
using pipeline::OpenedModel;
using pipeline::SessionContent;

void registerJobMetaTypes();

} // namespace mla

Q_DECLARE_METATYPE(mla::pipeline::OpenedModel)
Q_DECLARE_METATYPE(mla::pipeline::AnalysisPtr)
Q_DECLARE_METATYPE(mla::pipeline::ConversionOutcome)
Q_DECLARE_METATYPE(mla::pipeline::ExportOutcome)
Q_DECLARE_METATYPE(mla::pipeline::CheckOutcome)
Q_DECLARE_METATYPE(mla::pipeline::SessionContent)
Q_DECLARE_METATYPE(mla::Allocation)
Q_DECLARE_METATYPE(mla::Settings)
Q_DECLARE_METATYPE(mla::HealProgress)
Q_DECLARE_METATYPE(mla::pipeline::HealedConversion)
Q_DECLARE_METATYPE(mla::GgufExportReport)
