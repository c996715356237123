#include "plots/svg_paint_device.h"

#include <QBuffer>
#include <QFile>
#include <QHash>
#include <QImage>
#include <QPaintEngine>
#include <QPainter>
#include <QPainterPath>
#include <QPixmap>
#include <QTextItem>

#include <climits>

namespace mla {
namespace {

constexpr int kDpi = 96;

QString num(double v)
{
    return QString::number(v, 'g', 6);
}

QString escaped(const QString& s)
{
    return s.toHtmlEscaped();
}

QString colourAttr(const QString& name, const QColor& c)
{
    QString out = QStringLiteral(" %1=\"%2\"").arg(name, c.name(QColor::HexRgb));
    if (c.alpha() < 255)
        out += QStringLiteral(" %1-opacity=\"%2\"").arg(name, num(c.alphaF()));
    return out;
}

QString transformAttr(const QTransform& t)
{
    if (t.isIdentity())
        return QString();
    return QStringLiteral(" transform=\"matrix(%1 %2 %3 %4 %5 %6)\"")
        .arg(num(t.m11()), num(t.m12()), num(t.m21()), num(t.m22()), num(t.dx()), num(t.dy()));
}

QString pathData(const QPainterPath& path)
{
    QString d;
    for (int i = 0; i < path.elementCount(); ++i) {
        const QPainterPath::Element e = path.elementAt(i);
        switch (e.type) {
        case QPainterPath::MoveToElement:
            d += QStringLiteral("M%1 %2").arg(num(e.x), num(e.y));
            break;
        case QPainterPath::LineToElement:
            d += QStringLiteral("L%1 %2").arg(num(e.x), num(e.y));
            break;
        case QPainterPath::CurveToElement: {
            const QPainterPath::Element c2 = path.elementAt(i + 1);
            const QPainterPath::Element end = path.elementAt(i + 2);
            d += QStringLiteral("C%1 %2 %3 %4 %5 %6").arg(num(e.x), num(e.y), num(c2.x), num(c2.y), num(end.x), num(end.y));
            i += 2;
            break;
        }
        case QPainterPath::CurveToDataElement:
            break;
        }
    }
    return d;
}

} // namespace

class SvgPaintEngine : public QPaintEngine {
public:
    SvgPaintEngine() : QPaintEngine(QPaintEngine::AllFeatures) {}

    QByteArray document;
    QSize size;
    QString title;

    bool begin(QPaintDevice*) override
    {
        m_body.clear();
        m_defs.clear();
        m_clips.clear();
        setActive(true);
        return true;
    }

    bool end() override
    {
        QString out;
        out += QStringLiteral("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
        out += QStringLiteral("<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" version=\"1.1\" "
                              "width=\"%1\" height=\"%2\" viewBox=\"0 0 %1 %2\">\n")
                   .arg(size.width())
                   .arg(size.height());
        if (!title.isEmpty())
            out += QStringLiteral("<title>%1</title>\n").arg(escaped(title));
        if (!m_defs.isEmpty())
            out += QStringLiteral("<defs>\n%1</defs>\n").arg(m_defs);
        out += m_body;
        out += QStringLiteral("</svg>\n");
        document = out.toUtf8();
        setActive(false);
        return true;
    }

    void updateState(const QPaintEngineState&) override {}

    Type type() const override { return QPaintEngine::User; }

    void drawPath(const QPainterPath& path) override
    {
        emitShape(QStringLiteral("<path d=\"%1\"%2").arg(pathData(path), path.fillRule() == Qt::WindingFill ? QString() : QStringLiteral(" fill-rule=\"evenodd\"")),
                  true);
    }

    void drawPolygon(const QPointF* points, int count, PolygonDrawMode mode) override
    {
        QString pts;
        for (int i = 0; i < count; ++i)
            pts += QStringLiteral("%1,%2 ").arg(num(points[i].x()), num(points[i].y()));
        if (mode == PolylineMode) {
            emitShape(QStringLiteral("<polyline points=\"%1\"").arg(pts.trimmed()), false);
        } else {
            emitShape(QStringLiteral("<polygon points=\"%1\"%2").arg(pts.trimmed(), mode == OddEvenMode ? QStringLiteral(" fill-rule=\"evenodd\"") : QString()),
                      true);
        }
    }

    void drawLines(const QLineF* lines, int count) override
    {
        for (int i = 0; i < count; ++i)
            emitShape(QStringLiteral("<line x1=\"%1\" y1=\"%2\" x2=\"%3\" y2=\"%4\"")
                          .arg(num(lines[i].x1()), num(lines[i].y1()), num(lines[i].x2()), num(lines[i].y2())),
                      false);
    }

    void drawRects(const QRectF* rects, int count) override
    {
        for (int i = 0; i < count; ++i)
            emitShape(QStringLiteral("<rect x=\"%1\" y=\"%2\" width=\"%3\" height=\"%4\"")
                          .arg(num(rects[i].x()), num(rects[i].y()), num(rects[i].width()), num(rects[i].height())),
                      true);
    }

    void drawEllipse(const QRectF& r) override
    {
        emitShape(QStringLiteral("<ellipse cx=\"%1\" cy=\"%2\" rx=\"%3\" ry=\"%4\"")
                      .arg(num(r.center().x()), num(r.center().y()), num(r.width() / 2), num(r.height() / 2)),
                  true);
    }

    void drawPixmap(const QRectF& r, const QPixmap& pm, const QRectF& sr) override { drawImage(r, pm.toImage(), sr, Qt::AutoColor); }

    void drawImage(const QRectF& r, const QImage& image, const QRectF& sr, Qt::ImageConversionFlags) override
    {
        const QImage part = sr.toRect() == image.rect() ? image : image.copy(sr.toRect());
        QByteArray png;
        QBuffer buffer(&png);
        buffer.open(QIODevice::WriteOnly);
        part.save(&buffer, "PNG");
        const bool crisp = painter() && !painter()->testRenderHint(QPainter::SmoothPixmapTransform);
        m_body += QStringLiteral("<image x=\"%1\" y=\"%2\" width=\"%3\" height=\"%4\" preserveAspectRatio=\"none\"%5%6%7 "
                                 "xlink:href=\"data:image/png;base64,%8\"/>\n")
                      .arg(num(r.x()), num(r.y()), num(r.width()), num(r.height()),
                           crisp ? QStringLiteral(" style=\"image-rendering:pixelated\"") : QString(), transformAttr(currentTransform()),
                           clipAttr(), QString::fromLatin1(png.toBase64()));
    }

    void drawTextItem(const QPointF& p, const QTextItem& item) override
    {
        const QFont f = item.font();
        const double px = f.pixelSize() > 0 ? f.pixelSize() : f.pointSizeF() * kDpi / 72.0;
        const QColor colour = painter() ? painter()->pen().color() : QColor(Qt::black);
        QString style = QStringLiteral("font-family:'%1';font-size:%2px").arg(escaped(f.family()), num(px));
        if (f.bold())
            style += QStringLiteral(";font-weight:bold");
        if (f.italic())
            style += QStringLiteral(";font-style:italic");
        m_body += QStringLiteral("<text x=\"%1\" y=\"%2\" style=\"%3\"%4%5%6 xml:space=\"preserve\">%7</text>\n")
                      .arg(num(p.x()), num(p.y()), style, colourAttr(QStringLiteral("fill"), colour), transformAttr(currentTransform()),
                           clipAttr(), escaped(item.text()));
    }

private:
    QTransform currentTransform() const { return painter() ? painter()->combinedTransform() : QTransform(); }

    // Clips are rectangles in our plots: each distinct device rectangle becomes one clipPath, in device coordinates
    // (clipPathUnits userSpaceOnUse with an inverse of the element's transform would be exact for any shape; the
    // plots only clip to axis rectangles under identity transforms).
    QString clipAttr()
    {
        if (!painter() || !painter()->hasClipping())
            return QString();
        const QRectF r = painter()->combinedTransform().mapRect(painter()->clipBoundingRect());
        const QString key = QStringLiteral("%1,%2,%3,%4").arg(num(r.x()), num(r.y()), num(r.width()), num(r.height()));
        auto it = m_clips.find(key);
        if (it == m_clips.end()) {
            const QString id = QStringLiteral("clip%1").arg(m_clips.size());
            m_defs += QStringLiteral("<clipPath id=\"%1\" clipPathUnits=\"userSpaceOnUse\"><rect x=\"%2\" y=\"%3\" width=\"%4\" height=\"%5\"/></clipPath>\n")
                          .arg(id, num(r.x()), num(r.y()), num(r.width()), num(r.height()));
            it = m_clips.insert(key, id);
        }
        return QStringLiteral(" clip-path=\"url(#%1)\"").arg(it.value());
    }

    QString penAttrs() const
    {
        const QPen pen = painter() ? painter()->pen() : QPen(Qt::NoPen);
        if (pen.style() == Qt::NoPen || pen.brush().style() == Qt::NoBrush)
            return QStringLiteral(" stroke=\"none\"");
        const double w = pen.widthF() <= 0 ? 1.0 : pen.widthF();
        QString out = colourAttr(QStringLiteral("stroke"), pen.color()) + QStringLiteral(" stroke-width=\"%1\"").arg(num(w));
        if (pen.isCosmetic() || pen.widthF() <= 0)
            out += QStringLiteral(" vector-effect=\"non-scaling-stroke\"");
        switch (pen.capStyle()) {
        case Qt::RoundCap: out += QStringLiteral(" stroke-linecap=\"round\""); break;
        case Qt::SquareCap: out += QStringLiteral(" stroke-linecap=\"square\""); break;
        default: break;
        }
        switch (pen.joinStyle()) {
        case Qt::RoundJoin: out += QStringLiteral(" stroke-linejoin=\"round\""); break;
        case Qt::BevelJoin: out += QStringLiteral(" stroke-linejoin=\"bevel\""); break;
        default: out += QStringLiteral(" stroke-linejoin=\"miter\""); break;
        }
        if (pen.style() != Qt::SolidLine) {
            QStringList dashes;
            for (qreal d : pen.dashPattern())
                dashes << num(d * w);
            if (!dashes.isEmpty())
                out += QStringLiteral(" stroke-dasharray=\"%1\"").arg(dashes.join(QLatin1Char(',')));
        }
        return out;
    }

    QString brushAttrs() const
    {
        const QBrush brush = painter() ? painter()->brush() : QBrush();
        if (brush.style() == Qt::NoBrush)
            return QStringLiteral(" fill=\"none\"");
        QColor c = brush.color();
        if (const QGradient* g = brush.gradient(); g && !g->stops().isEmpty())
            c = g->stops().constFirst().second;
        return colourAttr(QStringLiteral("fill"), c);
    }

    void emitShape(const QString& open, bool fillable)
    {
        m_body += open + (fillable ? brushAttrs() : QStringLiteral(" fill=\"none\"")) + penAttrs() + transformAttr(currentTransform())
            + clipAttr();
        if (painter() && painter()->opacity() < 1.0)
            m_body += QStringLiteral(" opacity=\"%1\"").arg(num(painter()->opacity()));
        m_body += QStringLiteral("/>\n");
    }

    QString m_body;
    QString m_defs;
    QHash<QString, QString> m_clips;
};

SvgPaintDevice::SvgPaintDevice(QSize size, QString title) : m_size(size), m_title(std::move(title)), m_engine(std::make_unique<SvgPaintEngine>())
{
    m_engine->size = size;
    m_engine->title = m_title;
}

SvgPaintDevice::~SvgPaintDevice() = default;

QPaintEngine* SvgPaintDevice::paintEngine() const
{
    return m_engine.get();
}

QByteArray SvgPaintDevice::svg() const
{
    return m_engine->document;
}

bool SvgPaintDevice::save(const QString& path, QString* error) const
{
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate) || f.write(m_engine->document) != m_engine->document.size()) {
        if (error)
            *error = f.errorString();
        return false;
    }
    return true;
}

int SvgPaintDevice::metric(PaintDeviceMetric metric) const
{
    switch (metric) {
    case PdmWidth: return m_size.width();
    case PdmHeight: return m_size.height();
    case PdmWidthMM: return qRound(m_size.width() * 25.4 / kDpi);
    case PdmHeightMM: return qRound(m_size.height() * 25.4 / kDpi);
    case PdmNumColors: return INT_MAX;
    case PdmDepth: return 32;
    case PdmDpiX:
    case PdmDpiY:
    case PdmPhysicalDpiX:
    case PdmPhysicalDpiY: return kDpi;
    case PdmDevicePixelRatio: return 1;
    case PdmDevicePixelRatioScaled: return static_cast<int>(devicePixelRatioFScale());
    default: return 0;
    }
}

} // namespace mla
