#pragma once

#include <QByteArray>
#include <QPaintDevice>
#include <QSize>

#include <memory>

namespace mla {

class SvgPaintEngine;

// A paint device that records what is painted on it as SVG 1.1: paths, polygons, lines, rectangles and text stay
// vectors, images are embedded as PNG, rectangular clips become clipPaths. Enough for our plots (QCustomPlot paints
// through a QPainter), without a QtSvg dependency.
class SvgPaintDevice : public QPaintDevice {
public:
    explicit SvgPaintDevice(QSize size, QString title = QString());
    ~SvgPaintDevice() override;

    QPaintEngine* paintEngine() const override;
    QByteArray svg() const; // the document, complete once painting has ended
    bool save(const QString& path, QString* error = nullptr) const;

protected:
    int metric(PaintDeviceMetric metric) const override;

private:
    QSize m_size;
    QString m_title;
    std::unique_ptr<SvgPaintEngine> m_engine;
};

} // namespace mla
