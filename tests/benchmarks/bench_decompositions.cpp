// Spectrum + top-k factors of a Llama-2-7B-shaped joint key/value matrix (7680 x 4096, float32) against numpy's SVD of
// the same matrix. Run everything with tests/benchmarks/run_decompositions.sh BUILD_DIR [--size 1920x1024]; by hand:
//   bench_decompositions --out DIR [--size RxC] [--ranks 1536,2048] [--threads 1,2] [--eigen-baseline] [--randomized]
//       [--power-iterations 0,1,2]
//       builds the matrix, writes DIR/matrix.npy, times our pipeline (DIR/ours_times.json), writes our singular
//       values and the top right singular vectors for the comparison;
//   numpy_svd_baseline.py DIR     times numpy on DIR/matrix.npy and writes its singular values and vectors;
//   bench_decompositions --compare DIR   prints the side-by-side table with ratios and accuracy.
#include "numerics/decompositions.h"
#include "numerics/dense_kernels.h"
#include "numerics/random_fill.h"
#include "numerics/randomized_svd.h"

#include <Eigen/Eigenvalues>
#include <nlohmann/json.hpp>

#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace mla;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// ---- .npy files (little-endian float32 / float64, C order, 1-D or 2-D) ----

template <typename T>
const char* npyDescr();
template <>
const char* npyDescr<float>() { return "<f4"; }
template <>
const char* npyDescr<double>() { return "<f8"; }

template <typename T>
void writeNpy(const fs::path& path, const T* data, std::vector<std::int64_t> shape)
{
    std::string dict = std::string("{'descr': '") + npyDescr<T>() + "', 'fortran_order': False, 'shape': (";
    std::size_t count = 1;
    for (std::int64_t d : shape) {
        dict += std::to_string(d) + (shape.size() == 1 ? ",)" : ", ");
        count *= static_cast<std::size_t>(d);
    }
    if (shape.size() != 1) {
        dict.resize(dict.size() - 2);
        dict += ")";
    }
    dict += ", }";
    const std::size_t unpadded = 10 + dict.size() + 1;
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict += '\n';
    std::ofstream out(path, std::ios::binary);
    const char magic[] = "\x93NUMPY\x01\x00";
    out.write(magic, 8);
    const std::uint16_t headerLength = static_cast<std::uint16_t>(dict.size());
    out.write(reinterpret_cast<const char*>(&headerLength), 2);
    out.write(dict.data(), static_cast<std::streamsize>(dict.size()));
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(count * sizeof(T)));
    if (!out)
        throw std::runtime_error("cannot write " + path.string());
}

struct NpyArray {
    std::vector<std::int64_t> shape;
    std::vector<double> values; // widened to double
};

NpyArray readNpy(const fs::path& path)
{
    std::ifstream in(path, std::ios::binary);
    char magic[10];
    if (!in.read(magic, 10) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
        throw std::runtime_error(path.string() + ": not a .npy file");
    std::size_t headerLength = 0;
    if (magic[6] == 1) {
        headerLength = static_cast<unsigned char>(magic[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(magic[9])) << 8);
    } else {
        char more[2];
        in.read(more, 2);
        headerLength = static_cast<unsigned char>(magic[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(magic[9])) << 8) |
                       (static_cast<std::size_t>(static_cast<unsigned char>(more[0])) << 16) |
                       (static_cast<std::size_t>(static_cast<unsigned char>(more[1])) << 24);
    }
    std::string header(headerLength, '\0');
    in.read(header.data(), static_cast<std::streamsize>(headerLength));
    if (header.find("'fortran_order': False") == std::string::npos)
        throw std::runtime_error(path.string() + ": only C-order arrays are supported");
    const bool isDouble = header.find("'<f8'") != std::string::npos;
    if (!isDouble && header.find("'<f4'") == std::string::npos)
        throw std::runtime_error(path.string() + ": only float32 / float64 arrays are supported");
    NpyArray a;
    const std::size_t open = header.find('(', header.find("'shape'"));
    const std::size_t close = header.find(')', open);
    std::stringstream dims(header.substr(open + 1, close - open - 1));
    std::string item;
    std::size_t count = 1;
    while (std::getline(dims, item, ','))
        if (item.find_first_not_of(' ') != std::string::npos) {
            a.shape.push_back(std::stoll(item));
            count *= static_cast<std::size_t>(a.shape.back());
        }
    a.values.resize(count);
    if (isDouble) {
        in.read(reinterpret_cast<char*>(a.values.data()), static_cast<std::streamsize>(count * 8));
    } else {
        std::vector<float> f(count);
        in.read(reinterpret_cast<char*>(f.data()), static_cast<std::streamsize>(count * 4));
        for (std::size_t i = 0; i < count; ++i)
            a.values[i] = f[i];
    }
    if (!in)
        throw std::runtime_error(path.string() + ": truncated");
    return a;
}

// ---- the test matrix ----

// M = A diag(s) B + noise, A (rows x n) and B (n x cols) Gaussian scaled to unit expected column / row norm, so their
// columns / rows are nearly orthonormal; s_i = exp(-i / 600) as in trained key/value projections, plus a noise floor.
MatrixRM buildMatrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed)
{
    const Eigen::Index n = std::min(rows, cols);
    Eigen::MatrixXf a(rows, n), b(n, cols);
    fillGaussian(a, seed, 0);
    fillGaussian(b, seed, 1u << 20);
    a *= 1.0f / std::sqrt(static_cast<float>(rows));
    b *= 1.0f / std::sqrt(static_cast<float>(cols));
    for (Eigen::Index i = 0; i < n; ++i)
        b.row(i) *= static_cast<float>(std::exp(-static_cast<double>(i) / 600.0));
    MatrixRM m = a * b;
    Eigen::MatrixXf noise(rows, cols);
    fillGaussian(noise, seed, 1u << 21);
    m += noise * (1e-4f / std::sqrt(static_cast<float>(rows)));
    return m;
}

double cpuSeconds() // all threads of the process
{
    timespec t{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

std::string loadAverage()
{
    std::ifstream in("/proc/loadavg");
    std::string one, five, fifteen;
    in >> one >> five >> fifteen;
    return one + " " + five + " " + fifteen;
}

struct Seconds {
    double wall = 0.0;
    double cpu = 0.0;
    json toJson() const { return json{{"wall", wall}, {"cpu", cpu}}; }
};

class Stopwatch {
public:
    Stopwatch() : m_wall(now()), m_cpu(cpuSeconds()) {}
    Seconds elapsed() const { return {now() - m_wall, cpuSeconds() - m_cpu}; }

private:
    double m_wall;
    double m_cpu;
};

// Wall and CPU time per stage, from the stage names JobControl reports (the first report of a stage starts it).
class StageClock {
public:
    JobControl job()
    {
        return JobControl(nullptr, [this](double, const std::string& stage) {
            if (stage != m_stage)
                switchTo(stage);
        });
    }
    void stop() { switchTo(""); }
    json toJson() const
    {
        json j = json::object();
        for (const auto& [stage, seconds] : m_seconds)
            j[stage] = seconds.toJson();
        return j;
    }

private:
    void switchTo(const std::string& stage)
    {
        if (!m_stage.empty()) {
            const Seconds e = m_watch.elapsed();
            m_seconds[m_stage].wall += e.wall;
            m_seconds[m_stage].cpu += e.cpu;
        }
        m_stage = stage;
        m_watch = Stopwatch();
    }

    std::string m_stage;
    Stopwatch m_watch;
    std::map<std::string, Seconds> m_seconds;
};

std::vector<std::int64_t> parseList(const std::string& s)
{
    std::vector<std::int64_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ','))
        out.push_back(std::stoll(item));
    return out;
}

int runOurs(const fs::path& dir, Eigen::Index rows, Eigen::Index cols, const std::vector<std::int64_t>& ranks,
            const std::vector<std::int64_t>& threadCounts, bool eigenBaseline, bool randomized,
            const std::vector<std::int64_t>& powerIterations)
{
    fs::create_directories(dir);
    std::printf("building the %lld x %lld test matrix ...\n", static_cast<long long>(rows), static_cast<long long>(cols));
    std::fflush(stdout);
    const MatrixRM m = buildMatrix(rows, cols, 2024);
    writeNpy(dir / "matrix.npy", m.data(), {rows, cols});
    json times;
    times["rows"] = rows;
    times["cols"] = cols;
    times["kernels"] = denseKernelInstructionSet();
    times["load_average_start"] = loadAverage();

    for (std::int64_t threads : threadCounts) {
        omp_set_num_threads(static_cast<int>(threads));
        json& run = times["runs"][std::to_string(threads)];
        std::printf("%lld thread(s): spectrum (Gram, tridiagonal reduction, eigenvalues) ...\n", static_cast<long long>(threads));
        std::fflush(stdout);
        StageClock clock;
        Stopwatch watch;
        const SpectralDecomposition spectral(m, clock.job());
        clock.stop();
        run["spectrum"] = watch.elapsed().toJson();
        run["spectrum_stages"] = clock.toJson();
        const std::vector<double>& s = spectral.singularValues();
        writeNpy(dir / "ours_s.npy", s.data(), {static_cast<std::int64_t>(s.size())});
        for (std::int64_t k : ranks) {
            std::printf("%lld thread(s): factors k = %lld ...\n", static_cast<long long>(threads), static_cast<long long>(k));
            std::fflush(stdout);
            StageClock fc;
            Stopwatch fw;
            const LowRankFactors f = spectral.factors(m, k, fc.job());
            fc.stop();
            const std::string key = std::to_string(k);
            run["factors"][key] = fw.elapsed().toJson();
            run["factor_stages"][key] = fc.toJson();
            times["residual"][key] = f.residual;
            times["optimal_residual"][key] = f.optimalResidual;
            writeNpy(dir / ("ours_vt_" + key + ".npy"), f.down.data(), {f.down.rows(), f.down.cols()});
        }
    }
    omp_set_num_threads(static_cast<int>(threadCounts.back()));
    if (randomized) {
        // The conversion's opt-in randomized path (--decomposition randomized --power-iterations q): time and residual
        // excess over the exact path's optimal residual, per q, on the last thread count.
        for (std::int64_t k : ranks) {
            const std::string key = std::to_string(k);
            for (std::int64_t q : powerIterations) {
                std::printf("randomized factors k = %lld, q = %lld ...\n", static_cast<long long>(k), static_cast<long long>(q));
                std::fflush(stdout);
                LowRankOptions options;
                options.powerIterations = static_cast<int>(q);
                Stopwatch watch;
                const LowRankFactors r = randomizedLowRank(m, k, options);
                const json t = watch.elapsed().toJson();
                const std::string qk = std::to_string(q);
                times["randomized"][key][qk] = t;
                times["randomized_residual"][key][qk] = r.residual;
                const double optimal = times["optimal_residual"][key].get<double>();
                std::printf("  %s; residual / exact optimum - 1 = %.4f%%\n", t.dump().c_str(), 100.0 * (r.residual / optimal - 1.0));
            }
        }
    }
    if (eigenBaseline) {
        std::printf("Eigen SelfAdjointEigenSolver (eigenvalues only) on the Gram ...\n");
        std::fflush(stdout);
        const Eigen::MatrixXd g = gramMatrix(m, smallerGramSide(rows, cols));
        Stopwatch watch;
        Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(g, Eigen::EigenvaluesOnly);
        times["eigen_saes_eigenvalues"] = watch.elapsed().toJson();
    }
    times["load_average_end"] = loadAverage();
    std::ofstream(dir / "ours_times.json") << times.dump(2) << "\n";
    std::printf("wrote %s\n", (dir / "ours_times.json").c_str());
    return 0;
}

// Largest singular value of (I - P_ours) V_ref^T, i.e. sin of the largest principal angle between the two row spaces.
double largestSine(const Eigen::MatrixXd& ours, const Eigen::MatrixXd& reference)
{
    const Eigen::MatrixXd projected = reference - (reference * ours.transpose()) * ours;
    const MatrixXdRM r = projected;
    const std::vector<double> s = singularValues(r);
    return s.empty() ? 0.0 : s.front();
}

int compare(const fs::path& dir)
{
    json ours, theirs;
    std::ifstream(dir / "ours_times.json") >> ours;
    std::ifstream(dir / "numpy_times.json") >> theirs;
    const NpyArray sOurs = readNpy(dir / "ours_s.npy");
    const NpyArray sNumpy = readNpy(dir / "numpy_s.npy");
    const NpyArray vtNumpy = readNpy(dir / "numpy_vt.npy");
    const double svd = theirs["svd"]["wall"].get<double>();
    const double svdCpu = theirs["svd"]["cpu"].get<double>();

    std::printf("\nMatrix %lld x %lld float32. Ours: %s kernels; numpy %s (%s)\n", ours["rows"].get<long long>(),
                ours["cols"].get<long long>(), ours["kernels"].get<std::string>().c_str(),
                theirs["numpy_version"].get<std::string>().c_str(), theirs["blas"].get<std::string>().c_str());
    std::printf("Load average (1/5/15 min) - ours: %s -> %s; numpy: %s -> %s\n\n", ours["load_average_start"].get<std::string>().c_str(),
                ours["load_average_end"].get<std::string>().c_str(), theirs["load_average_start"].get<std::string>().c_str(),
                theirs["load_average_end"].get<std::string>().c_str());
    std::printf("| %-56s | %7s | %8s | %8s | %9s | %9s |\n", "step", "threads", "wall s", "CPU s", "wall/SVD", "CPU/SVD");
    std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(58, '-').c_str(), std::string(9, '-').c_str(), std::string(10, '-').c_str(),
                std::string(10, '-').c_str(), std::string(11, '-').c_str(), std::string(11, '-').c_str());
    auto row = [&](const std::string& name, const std::string& threads, const json& t) {
        const double wall = t["wall"].get<double>();
        const double cpu = t["cpu"].get<double>();
        std::printf("| %-56s | %7s | %8.2f | %8.2f | %9.4f | %9.4f |\n", name.c_str(), threads.c_str(), wall, cpu, wall / svd, cpu / svdCpu);
    };
    auto sum = [](const json& a, const json& b) {
        return json{{"wall", a["wall"].get<double>() + b["wall"].get<double>()}, {"cpu", a["cpu"].get<double>() + b["cpu"].get<double>()}};
    };
    for (const auto& [threads, run] : ours["runs"].items()) {
        for (const auto& [stage, t] : run["spectrum_stages"].items())
            row("  ours: " + stage, threads, t);
        row("ours: spectrum (all singular values)", threads, run["spectrum"]);
        for (const auto& [key, t] : run["factors"].items()) {
            for (const auto& [stage, st] : run["factor_stages"][key].items())
                row("  ours: k=" + key + " " + stage, threads, st);
            row("ours: top-k factors k=" + key + " (given the spectrum)", threads, t);
            row("**ours: spectrum + factors k=" + key + " (per layer)**", threads, sum(run["spectrum"], t));
        }
    }
    if (ours.contains("randomized"))
        for (const auto& [key, perQ] : ours["randomized"].items())
            for (const auto& [q, t] : perQ.items())
                row("ours: randomized factors k=" + key + " (alone; q=" + q + ", p=16)", "", t);
    if (ours.contains("eigen_saes_eigenvalues"))
        row("Eigen SelfAdjointEigenSolver, eigenvalues of the Gram", "1", ours["eigen_saes_eigenvalues"]);
    row("numpy: Gram (float64) + eigh", "1", theirs["gram_eigh"]);
    row("numpy: svd(full_matrices=False), " + theirs["svd_dtype"].get<std::string>(), "1", theirs["svd"]);

    // Accuracy against numpy's SVD.
    const std::size_t n = sOurs.values.size();
    const double s1 = sNumpy.values.at(0);
    double worstAbs = 0.0;
    for (std::size_t i = 0; i < n; ++i)
        worstAbs = std::max(worstAbs, std::abs(sOurs.values[i] - sNumpy.values[i]) / s1);
    std::printf("\nAccuracy against numpy's SVD:\n- all %zu singular values: max |s_ours - s_numpy| / s_1 = %.2e\n", n, worstAbs);
    const Eigen::Index refRank = vtNumpy.shape.at(0);
    const Eigen::Index cols = vtNumpy.shape.at(1);
    const Eigen::MatrixXd vtRef = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
        vtNumpy.values.data(), refRank, cols);
    for (const auto& [key, value] : ours["residual"].items()) {
        const Eigen::Index k = std::stoll(key);
        double worstRel = 0.0;
        for (Eigen::Index i = 0; i < k && i < static_cast<Eigen::Index>(n); ++i)
            worstRel = std::max(worstRel, std::abs(sOurs.values[static_cast<std::size_t>(i)] - sNumpy.values[static_cast<std::size_t>(i)]) /
                                              sNumpy.values[static_cast<std::size_t>(i)]);
        const NpyArray vt = readNpy(dir / ("ours_vt_" + key + ".npy"));
        const Eigen::MatrixXd vtOurs = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
            vt.values.data(), vt.shape.at(0), vt.shape.at(1));
        double tail = 0.0; // the optimal residual, from numpy's spectrum
        for (std::size_t i = static_cast<std::size_t>(k); i < sNumpy.values.size(); ++i)
            tail += sNumpy.values[i] * sNumpy.values[i];
        std::printf("- k=%s: top-k singular values max relative error %.2e; sin(largest principal angle) between our V_k and"
                    " numpy's %.2e; residual / optimal - 1 = %.2e",
                    key.c_str(), worstRel, k <= refRank ? largestSine(vtOurs, vtRef.topRows(k)) : -1.0,
                    value.get<double>() / std::sqrt(tail) - 1.0);
        if (ours.contains("randomized_residual"))
            for (const auto& [q, r] : ours["randomized_residual"][key].items())
                std::printf(" (randomized, q=%s: %.2e)", q.c_str(), r.get<double>() / std::sqrt(tail) - 1.0);
        std::printf("\n");
    }
    return 0;
}

void usage()
{
    std::fprintf(stderr, "usage: bench_decompositions --out DIR [--size RxC] [--ranks k1,k2] [--threads 1,2] [--eigen-baseline]"
                         " [--randomized]\n"
                         "       bench_decompositions --compare DIR\n");
}

} // namespace

int main(int argc, char** argv)
{
    try {
        fs::path out, compareDir;
        Eigen::Index rows = 7680, cols = 4096;
        std::vector<std::int64_t> ranks; // default: 3/8 and 1/2 of min(rows, cols), i.e. 1536 and 2048 at full size
        std::vector<std::int64_t> threadCounts{omp_get_max_threads()};
        bool eigenBaseline = false, randomized = false;
        std::vector<std::int64_t> powerIterations{LowRankOptions{}.powerIterations};
        for (int i = 1; i < argc; ++i) {
            const std::string a = argv[i];
            auto next = [&]() -> std::string {
                if (i + 1 >= argc)
                    throw std::runtime_error(a + " needs a value");
                return argv[++i];
            };
            if (a == "--out")
                out = next();
            else if (a == "--compare")
                compareDir = next();
            else if (a == "--size") {
                const std::string v = next();
                const std::size_t x = v.find('x');
                if (x == std::string::npos)
                    throw std::runtime_error("--size wants ROWSxCOLS, got " + v);
                rows = std::stoll(v.substr(0, x));
                cols = std::stoll(v.substr(x + 1));
            } else if (a == "--ranks")
                ranks = parseList(next());
            else if (a == "--threads")
                threadCounts = parseList(next());
            else if (a == "--eigen-baseline")
                eigenBaseline = true;
            else if (a == "--randomized")
                randomized = true;
            else if (a == "--power-iterations")
                powerIterations = parseList(next());
            else {
                usage();
                return 2;
            }
        }
        if (!compareDir.empty())
            return compare(compareDir);
        if (out.empty()) {
            usage();
            return 2;
        }
        if (ranks.empty()) {
            const Eigen::Index n = std::min(rows, cols);
            ranks = {3 * n / 8, n / 2};
        }
        if (threadCounts.empty())
            throw std::runtime_error("--threads wants a list such as 1,2");
        return runOurs(out, rows, cols, ranks, threadCounts, eigenBaseline, randomized, powerIterations);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bench_decompositions: %s\n", e.what());
        return 1;
    }
}
