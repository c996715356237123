#include "document/settings_store.h"

namespace mla {

QVariantMap settingsToVariant(const SettingsSnapshot& snapshot)
{
    const ConversionSettings& s = snapshot.conversion;
    const CalibrationOptions& c = snapshot.calibration;
    QVariantMap m;
    m[QStringLiteral("strategy")] = QString::fromUtf8(ropeStrategyName(s.strategy).data());
    m[QStringLiteral("method")] = QString::fromUtf8(latentMethodName(s.method).data());
    m[QStringLiteral("sigma")] = QString::fromUtf8(sigmaPlacementName(s.sigma).data());
    m[QStringLiteral("targetSaving")] = s.targetSaving;
    m[QStringLiteral("activationAware")] = s.activationAware;
    m[QStringLiteral("balanceKeyValue")] = s.balanceKeyValue;
    m[QStringLiteral("refit")] = s.refit;
    m[QStringLiteral("allocate")] = s.allocate;
    m[QStringLiteral("preset")] = QString::fromStdString(s.preset);
    m[QStringLiteral("calibrationSource")] = static_cast<int>(c.source);
    m[QStringLiteral("calibrationSamples")] = static_cast<qlonglong>(c.samples);
    m[QStringLiteral("calibrationLength")] = static_cast<qlonglong>(c.sequenceLength);
    m[QStringLiteral("calibrationFile")] = QString::fromStdString(c.file.string());
    return m;
}

void settingsFromVariant(const QVariantMap& m, SettingsSnapshot& snapshot)
{
    ConversionSettings& s = snapshot.conversion;
    CalibrationOptions& c = snapshot.calibration;
    RopeStrategy strategy;
    if (parseRopeStrategy(m.value(QStringLiteral("strategy")).toString().toStdString(), strategy))
        s.strategy = strategy;
    LatentMethod method;
    if (parseLatentMethod(m.value(QStringLiteral("method")).toString().toStdString(), method))
        s.method = method;
    SigmaPlacement sigma;
    if (parseSigmaPlacement(m.value(QStringLiteral("sigma")).toString().toStdString(), sigma))
        s.sigma = sigma;
    const double saving = m.value(QStringLiteral("targetSaving"), s.targetSaving).toDouble();
    if (saving > 0.0 && saving < 1.0)
        s.targetSaving = saving;
    s.activationAware = m.value(QStringLiteral("activationAware"), s.activationAware).toBool();
    s.balanceKeyValue = m.value(QStringLiteral("balanceKeyValue"), s.balanceKeyValue).toBool();
    s.refit = m.value(QStringLiteral("refit"), s.refit).toBool();
    s.allocate = m.value(QStringLiteral("allocate"), s.allocate).toBool();
    const QString preset = m.value(QStringLiteral("preset")).toString();
    s.preset = preset == QLatin1String("paper") || preset == QLatin1String("best") ? preset.toStdString() : std::string();
    const int source = m.value(QStringLiteral("calibrationSource"), static_cast<int>(c.source)).toInt();
    if (source >= 0 && source <= 2)
        c.source = static_cast<CalibrationOptions::Source>(source);
    const qlonglong samples = m.value(QStringLiteral("calibrationSamples"), static_cast<qlonglong>(c.samples)).toLongLong();
    if (samples > 0 && samples <= 4096)
        c.samples = samples;
    const qlonglong length = m.value(QStringLiteral("calibrationLength"), static_cast<qlonglong>(c.sequenceLength)).toLongLong();
    if (length >= 8)
        c.sequenceLength = length;
    c.file = m.value(QStringLiteral("calibrationFile")).toString().toStdString();
    if (c.source != CalibrationOptions::Source::Samples && c.file.empty())
        c.source = CalibrationOptions::Source::Samples;
}

} // namespace mla
