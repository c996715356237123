#include "jobs/devices.h"

#include "util/error.h"

#include <QObject>

namespace mla {

QList<DeviceChoice> availableDevices()
{
    QList<DeviceChoice> out;
    for (const ComputeDevice& d : listComputeDevices()) {
        out.append({QString::fromStdString(d.id), QString::fromStdString(d.label()),
                    d.gpu ? QObject::tr("Runs analysis, conversion and the sanity check on this GPU")
                          : QObject::tr("Runs on the CPU; weights stay memory-mapped in their dtype")});
    }
    return out;
}

DeviceSelection selectDevice(const QString& id)
{
    try {
        BackendSelection s = selectBackend(id.toStdString());
        return {std::move(s.backend), QString::fromStdString(s.message)};
    } catch (const Error& e) {
        return {cpuBackendShared(), QString::fromUtf8(e.what())};
    }
}

} // namespace mla
