// What the widget tests that drive a Workbench share: the demo model's path and waiting until its jobs are done.
#pragma once

#include "common/test_support.h"
#include "document/workbench.h"

#include <QString>
#include <QTest>

namespace mla::test {

inline constexpr int kWorkbenchTimeoutMs = 120000;

inline QString demoPath()
{
    return QString::fromStdString((demoDir() / "stories260K.bin").string());
}

// True when the workbench went idle within the timeout.
inline bool waitIdle(Workbench& wb)
{
    return QTest::qWaitFor([&] { return !wb.isBusy(); }, kWorkbenchTimeoutMs);
}

} // namespace mla::test
