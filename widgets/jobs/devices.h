#pragma once

#include "backend/compute_backend.h"

#include <QList>
#include <QString>

#include <memory>

namespace mla {

// A compute device the run bar offers, filled from core's listComputeDevices(): the CPU, then each usable GPU.
struct DeviceChoice {
    QString id;      // "cpu", "cuda:0", "cuda:1", ...
    QString label;   // shown in the combo
    QString details; // tooltip
};

QList<DeviceChoice> availableDevices();

struct DeviceSelection {
    std::shared_ptr<const ComputeBackend> backend; // never null: the CPU when the device cannot be used
    QString message; // for the user when the choice could not be honoured exactly (e.g. no usable GPU N: the CPU)
};

// The backend for device `id` (core's selectBackend, GPU index included). Nothing global changes: the workbench gives
// the backend to the jobs it starts from then on.
DeviceSelection selectDevice(const QString& id);

} // namespace mla
