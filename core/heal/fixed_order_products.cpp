#include "heal/fixed_order_products.h"

#include <algorithm>

namespace mla::heal {
namespace {

using Index = Eigen::Index;

// About 16 panels of a multiple of 16 rows (or columns), between 16 and 512: enough panels for any core count to
// share, large enough that re-packing the other operand per panel stays a small fraction of the work.
Index panelSize(Index extent)
{
    Index p = (extent + 15) / 16;
    p = (p + 15) / 16 * 16;
    return std::clamp<Index>(p, 16, 512);
}

// Calls f(firstRow, rowCount, firstCol, colCount) for each panel of a rows x cols output, cut along its longer side.
// Always inside an OpenMP team, so Eigen never threads (and never re-blocks for a thread count) inside a panel.
template <typename F>
void forEachPanel(Index rows, Index cols, F f)
{
    const bool byRows = rows >= cols;
    const Index extent = byRows ? rows : cols;
    if (extent == 0)
        return;
    const Index size = panelSize(extent);
    const Index count = (extent + size - 1) / size;
#pragma omp parallel for schedule(dynamic, 1)
    for (Index i = 0; i < count; ++i) {
        const Index begin = i * size;
        const Index n = std::min(size, extent - begin);
        if (byRows)
            f(begin, n, Index(0), cols);
        else
            f(Index(0), rows, begin, n);
    }
}

template <typename Dst, typename Expr>
void assign(Dst&& dst, const Expr& e, bool accumulate)
{
    if (accumulate)
        dst.noalias() += e;
    else
        dst.noalias() = e;
}

} // namespace

template <typename S>
void multiplyBt(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate)
{
    if (a.cols() == 0) {
        if (!accumulate)
            c.setZero();
        return;
    }
    forEachPanel(c.rows(), c.cols(), [&](Index r0, Index nr, Index c0, Index nc) {
        assign(c.block(r0, c0, nr, nc), a.middleRows(r0, nr) * b.middleRows(c0, nc).transpose(), accumulate);
    });
}

template <typename S>
void multiply(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate)
{
    if (a.cols() == 0) {
        if (!accumulate)
            c.setZero();
        return;
    }
    forEachPanel(c.rows(), c.cols(), [&](Index r0, Index nr, Index c0, Index nc) {
        assign(c.block(r0, c0, nr, nc), a.middleRows(r0, nr) * b.middleCols(c0, nc), accumulate);
    });
}

template <typename S>
void multiplyAt(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate)
{
    if (a.rows() == 0) {
        if (!accumulate)
            c.setZero();
        return;
    }
    forEachPanel(c.rows(), c.cols(), [&](Index r0, Index nr, Index c0, Index nc) {
        assign(c.block(r0, c0, nr, nc), a.middleCols(r0, nr).transpose() * b.middleCols(c0, nc), accumulate);
    });
}

template <typename S>
void columnSums(ConstRef<S> a, MutRef<S> out, bool accumulate)
{
    if (!accumulate)
        out.setZero();
    const Index cols = a.cols();
    const Index size = panelSize(cols);
    const Index count = (cols + size - 1) / size;
#pragma omp parallel for schedule(static)
    for (Index i = 0; i < count; ++i) {
        const Index c0 = i * size;
        const Index n = std::min(size, cols - c0);
        for (Index r = 0; r < a.rows(); ++r)
            out.row(0).segment(c0, n) += a.row(r).segment(c0, n);
    }
}

#define MLA_HEAL_PRODUCTS(S)                                                \
    template void multiplyBt<S>(ConstRef<S>, ConstRef<S>, MutRef<S>, bool); \
    template void multiply<S>(ConstRef<S>, ConstRef<S>, MutRef<S>, bool);   \
    template void multiplyAt<S>(ConstRef<S>, ConstRef<S>, MutRef<S>, bool); \
    template void columnSums<S>(ConstRef<S>, MutRef<S>, bool);
MLA_HEAL_PRODUCTS(float)
MLA_HEAL_PRODUCTS(double)
#undef MLA_HEAL_PRODUCTS

} // namespace mla::heal
