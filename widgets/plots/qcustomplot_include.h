#pragma once

// The one place that includes QCustomPlot. Its header uses Qt's `foreach` keyword in two templates, which
// QT_NO_FOREACH (kept for our own code) removes; a range-for stands in while the header is parsed.
#ifndef foreach
#define foreach(variable, container) for (variable : container)
#define MLA_QCUSTOMPLOT_FOREACH
#endif
#include <qcustomplot.h>
#ifdef MLA_QCUSTOMPLOT_FOREACH
#undef foreach
#undef MLA_QCUSTOMPLOT_FOREACH
#endif
