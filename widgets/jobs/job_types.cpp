#include "jobs/job_types.h"

namespace mla {

void registerJobMetaTypes()
{
    qRegisterMetaType<LoadedModel>();
    qRegisterMetaType<AnalysisPtr>();
    qRegisterMetaType<ConversionOutcome>();
    qRegisterMetaType<ExportOutcome>();
    qRegisterMetaType<SanityReport>();
}

} // namespace mla
