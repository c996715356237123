// The opt-in randomized decomposition of a conversion (--decomposition randomized) and its check against the exact
// one: the exact factors are the best of their rank (an independent SVD), the randomized ones never better and close to
// them with enough power iterations, and the pipeline measures and reports both on the first layer.
#include "analysis/key_value_split.h"
#include "backend/compute_backend.h"
#include "common/model_fixtures.h"
#include "common/test_support.h"
#include "conversion/converter.h"
#include "conversion/decomposition_check.h"
#include "conversion/settings_validation.h"
#include "pipeline/convert.h"
#include "pipeline/open_model.h"
#include "settings/settings_table.h"
#include "util/error.h"

#include <Eigen/SVD>
#include <QtTest>

#include <cmath>

using namespace mla;

namespace {

ConversionSettings lowRankSettings(DecompositionMethod method, std::int64_t powerIterations)
{
    ConversionSettings s;
    s.strategy = RopeStrategy::High;
    s.ropePairs = 1;
    s.latentDim = 8;
    s.decomposition = method;
    s.powerIterations = powerIterations;
    return s;
}

// ||M - M_k||_F / ||M||_F for the best rank-k approximation of layer 0's joint [W_k_nope; W_v], from Eigen's SVD.
double optimalRelativeError(const Model& model, const ConversionSettings& s, std::int64_t k)
{
    const auto selections = selectPairs(model.config, s, nullptr);
    const KeyValueSplit split = splitKeyValue(model.config, model.layers[0], selections[0]);
    const Eigen::MatrixXd joint = jointKeyValue(split).cast<double>();
    const Eigen::VectorXd sv = Eigen::JacobiSVD<Eigen::MatrixXd>(joint).singularValues();
    return std::sqrt(sv.tail(sv.size() - k).squaredNorm() / sv.squaredNorm());
}

DecompositionCheck checkLayer0(const Model& model, const ConversionSettings& s, const MatrixXdRM* covariance = nullptr)
{
    const ConversionPlan plan = planConversion(model.config, s, selectPairs(model.config, s, nullptr));
    return checkDecomposition(cpuBackend(), model.config, 0, model.layers[0], plan.converted.mla->layers[0], s, covariance);
}

} // namespace

class TestDecompositionCheck : public QObject {
    Q_OBJECT
private slots:
    void exactIsTheOptimumAndRandomizedApproachesIt_data();
    void exactIsTheOptimumAndRandomizedApproachesIt();
    void wholeMatrixSketchFallsBackToExact();
    void whitenedCheckUsesTheCovariance();
    void pipelineChecksTheFirstLayerAndConvertsRandomized();
    void settingsAreValidated();
};

void TestDecompositionCheck::exactIsTheOptimumAndRandomizedApproachesIt_data()
{
    QTest::addColumn<QString>("model");
    QTest::newRow("stories260K (GQA)") << QStringLiteral("stories260K");
    QTest::newRow("aidreams260K (MHA)") << QStringLiteral("aidreams260K");
}

void TestDecompositionCheck::exactIsTheOptimumAndRandomizedApproachesIt()
{
    QFETCH(QString, model);
    const Model m = test::loadRealModel(model.toStdString());
    const double optimal = optimalRelativeError(m, lowRankSettings(DecompositionMethod::Exact, 0), 8);
    QVERIFY(optimal > 1e-3); // the latent really truncates: an excess can show
    double previousExcess = std::numeric_limits<double>::infinity();
    for (std::int64_t q : {0, 2, 8}) {
        const DecompositionCheck c = checkLayer0(m, lowRankSettings(DecompositionMethod::Randomized, q));
        QCOMPARE(c.layer, std::int64_t{0});
        QCOMPARE(c.powerIterations, q);
        QVERIFY(!c.whitened);
        QVERIFY2(std::abs(c.exactRelativeError / optimal - 1.0) < 1e-6,
                 qPrintable(QStringLiteral("exact %1, SVD optimum %2").arg(c.exactRelativeError).arg(optimal)));
        // Never better than the best factors of that rank (up to float rounding of the residual).
        QVERIFY2(c.excess() > -1e-6, qPrintable(QString::number(c.excess())));
        QVERIFY2(c.excess() <= previousExcess + 1e-6, qPrintable(QStringLiteral("q %1: excess %2 after %3").arg(q).arg(c.excess()).arg(previousExcess)));
        QVERIFY(c.exactSeconds > 0.0 && c.randomizedSeconds > 0.0);
        previousExcess = c.excess();
    }
    QVERIFY2(previousExcess < 1e-4, qPrintable(QString::number(previousExcess))); // 8 iterations: converged
}

void TestDecompositionCheck::wholeMatrixSketchFallsBackToExact()
{
    // latent + oversampling >= min(rows, cols): the sketch would be the whole space, so the factors are the exact ones,
    // bit for bit.
    const Model m = test::loadRealModel("stories260K");
    ConversionSettings exact = lowRankSettings(DecompositionMethod::Exact, 0);
    exact.latentDim = 48;
    ConversionSettings randomized = exact;
    randomized.decomposition = DecompositionMethod::Randomized;
    const Model a = convertModel(cpuBackend(), m, planConversion(m.config, exact, selectPairs(m.config, exact, nullptr)));
    const Model b = convertModel(cpuBackend(), m, planConversion(m.config, randomized, selectPairs(m.config, randomized, nullptr)));
    for (std::size_t l = 0; l < a.layers.size(); ++l) {
        QVERIFY(a.layers[l].downKv.toMatrix() == b.layers[l].downKv.toMatrix());
        QVERIFY(a.layers[l].upK.toMatrix() == b.layers[l].upK.toMatrix());
    }
}

void TestDecompositionCheck::whitenedCheckUsesTheCovariance()
{
    // Activation-aware: measured on the whitened matrix when the covariance is at hand, else in weight space.
    const Model m = test::loadRealModel("stories260K");
    ConversionSettings s = lowRankSettings(DecompositionMethod::Randomized, 1);
    s.activationAware = true;
    Eigen::MatrixXd x = Eigen::MatrixXd::Random(4 * m.config.hidden, m.config.hidden);
    x.col(0) *= 10.0; // an anisotropic input: whitening changes the matrix decomposed
    const MatrixXdRM covariance = x.transpose() * x / static_cast<double>(x.rows());
    const DecompositionCheck whitened = checkLayer0(m, s, &covariance);
    QVERIFY(whitened.whitened);
    const DecompositionCheck plain = checkLayer0(m, s, nullptr);
    QVERIFY(!plain.whitened);
    QVERIFY(std::abs(plain.exactRelativeError / optimalRelativeError(m, s, 8) - 1.0) < 1e-6);
    QVERIFY(std::abs(whitened.exactRelativeError - plain.exactRelativeError) > 1e-4);
    QVERIFY(whitened.excess() > -1e-6);
}

void TestDecompositionCheck::pipelineChecksTheFirstLayerAndConvertsRandomized()
{
    const pipeline::OpenedModel opened = pipeline::openModel({test::realModelPath("stories260K"), std::nullopt, true}, ExecutionContext());
    Settings settings;
    settings.conversion = lowRankSettings(DecompositionMethod::Randomized, 0);
    const pipeline::ConversionOutcome randomized = pipeline::convertInMemory(opened, nullptr, settings, ExecutionContext());
    QVERIFY(randomized.decompositionCheck);
    QCOMPARE(randomized.decompositionCheck->layer, std::int64_t{0});
    // Every layer's factors are the randomized ones (as convertAttention gives them), not the exact ones.
    const Model& original = *opened.model;
    const ConversionPlan& plan = randomized.plan;
    for (std::int64_t l = 0; l < original.config.layers; ++l) {
        const auto li = static_cast<std::size_t>(l);
        const ConvertedAttention expected = convertAttention(cpuBackend(), original.config, original.layers[li], plan.converted.mla->layers[li],
                                                             plan.settings);
        QVERIFY(randomized.converted->layers[li].downKv.toMatrix() == expected.downKv);
        ConversionSettings exact = plan.settings;
        exact.decomposition = DecompositionMethod::Exact;
        const ConvertedAttention best = convertAttention(cpuBackend(), original.config, original.layers[li], plan.converted.mla->layers[li], exact);
        QVERIFY(expected.factorSquaredResidual >= best.factorSquaredResidual * (1.0 - 1e-6));
        QVERIFY(!(randomized.converted->layers[li].downKv.toMatrix() == best.downKv));
    }
    settings.conversion.decomposition = DecompositionMethod::Exact;
    QVERIFY(!pipeline::convertInMemory(opened, nullptr, settings, ExecutionContext()).decompositionCheck);
}

void TestDecompositionCheck::settingsAreValidated()
{
    const Model m = test::loadRealModel("stories260K");
    ConversionSettings s = lowRankSettings(DecompositionMethod::Randomized, kMaxPowerIterations);
    validateConversionSettings(m.config, s);
    s.powerIterations = kMaxPowerIterations + 1;
    QVERIFY_THROWS_EXCEPTION(Error, validateConversionSettings(m.config, s));
    s.powerIterations = -1;
    QVERIFY_THROWS_EXCEPTION(Error, validateConversionSettings(m.config, s));
    s = ConversionSettings{};
    s.decomposition = DecompositionMethod::Randomized;
    s.target = ConversionTarget::DeepSeekV3;
    QVERIFY_THROWS_EXCEPTION(Error, validateConversionSettings(m.config, s));

    // The flags set both fields; the settings table reads and prints them.
    const std::map<std::string, std::string> flags{{"decomposition", "randomized"}, {"power-iterations", "3"}};
    const Settings parsed = settingsFromFlags(
        [&](std::string_view f) -> std::optional<std::string> {
            const auto it = flags.find(std::string(f));
            return it == flags.end() ? std::nullopt : std::optional<std::string>(it->second);
        },
        m.config);
    QVERIFY(parsed.conversion.decomposition == DecompositionMethod::Randomized);
    QCOMPARE(parsed.conversion.powerIterations, std::int64_t{3});
    const nlohmann::ordered_json j = settingsJson(parsed.conversion);
    QCOMPARE(j["decomposition"].get<std::string>(), std::string("randomized"));
    QCOMPARE(j["power_iterations"].get<std::int64_t>(), std::int64_t{3});
}

QTEST_APPLESS_MAIN(TestDecompositionCheck)
#include "tst_decomposition_check.moc"
