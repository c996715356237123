#pragma once

#include <QList>
#include <QString>

namespace mla {

// A compute device the run bar offers. The combo is filled from this list: core's listComputeDevices() when the
// backend layer is built in (CPU, then each usable GPU), else the CPU alone.
struct DeviceChoice {
    QString id;      // "cpu", "cuda:0", ...
    QString label;   // shown in the combo
    QString details; // tooltip
};

QList<DeviceChoice> availableDevices();

// Makes `id` the device core's long jobs run on. Returns a message for the user when the choice could not be honoured
// exactly (e.g. no usable CUDA device: the CPU is used), else an empty string.
QString selectDevice(const QString& id);

} // namespace mla
