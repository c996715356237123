#include "jobs/devices.h"

#include <QObject>
#include <QThread>

#ifdef MLA_HAVE_BACKENDS
#include "backend/compute_backend.h"
#include "util/error.h"
#endif

namespace mla {

QList<DeviceChoice> availableDevices()
{
#ifdef MLA_HAVE_BACKENDS
    QList<DeviceChoice> out;
    for (const ComputeDevice& d : listComputeDevices()) {
        out.append({QString::fromStdString(d.id), QString::fromStdString(d.label()),
                    d.gpu ? QObject::tr("Runs analysis, conversion and the sanity check on this GPU")
                          : QObject::tr("Runs on the CPU; weights stay memory-mapped in their dtype")});
    }
    if (!out.isEmpty())
        return out;
#endif
    const int threads = QThread::idealThreadCount();
    return {{QStringLiteral("cpu"), QObject::tr("CPU (%n threads)", nullptr, threads),
             QObject::tr("Runs on the CPU (OpenMP); weights stay memory-mapped in their dtype")}};
}

QString selectDevice(const QString& id)
{
#ifdef MLA_HAVE_BACKENDS
    try {
        const QString kind = id.section(QLatin1Char(':'), 0, 0);
        BackendSelection s = selectBackend(kind.toStdString());
        setCurrentBackend(s.backend);
        return QString::fromStdString(s.message);
    } catch (const Error& e) {
        setCurrentBackend(nullptr);
        return QString::fromUtf8(e.what());
    }
#else
    return id == QLatin1String("cpu") ? QString() : QObject::tr("Only the CPU is available in this build");
#endif
}

} // namespace mla
