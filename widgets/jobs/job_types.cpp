#include "jobs/job_types.h"

namespace mla {

void registerJobMetaTypes()
{
    qRegisterMetaType<OpenedModel>();
    qRegisterMetaType<AnalysisPtr>();
    qRegisterMetaType<ConversionOutcome>();
    qRegisterMetaType<ExportOutcome>();
    qRegisterMetaType<CheckOutcome>();
    qRegisterMetaType<SessionContent>();
    qRegisterMetaType<Allocation>();
    qRegisterMetaType<Settings>();
    qRegisterMetaType<HealProgress>();
    qRegisterMetaType<pipeline::HealedConversion>();
    qRegisterMetaType<GgufExportReport>();
}

} // namespace mla
