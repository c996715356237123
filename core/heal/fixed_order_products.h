#pragma once

#include <Eigen/Core>

// Matrix products whose every output element is computed in an order fixed by the shapes alone, on all threads.
//
// Eigen's own multi-threaded product chooses its depth blocking from the thread count, so the same product can round
// differently on 1 and 16 threads. Here the output is cut into panels whose size depends only on the shapes; each
// panel is one single-threaded Eigen product (Eigen never threads inside an OpenMP team), and OpenMP only decides
// which thread computes which panel. Same inputs, same machine: the same bits whatever the thread count.
namespace mla::heal {

template <typename S>
using ConstRef = Eigen::Ref<const Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;
template <typename S>
using MutRef = Eigen::Ref<Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;

// c (=|+=) a * b^T      a [n, k], b [m, k], c [n, m]   (a linear layer: x W^T)
template <typename S>
void multiplyBt(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate = false);
// c (=|+=) a * b        a [n, k], b [k, m], c [n, m]   (the input gradient: dy W)
template <typename S>
void multiply(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate = false);
// c (=|+=) a^T * b      a [k, n], b [k, m], c [n, m]   (the weight gradient: dy^T x)
template <typename S>
void multiplyAt(ConstRef<S> a, ConstRef<S> b, MutRef<S> c, bool accumulate = false);

// Column sums of a [n, m] into out [1, m] (=|+=), each column summed top to bottom.
template <typename S>
void columnSums(ConstRef<S> a, MutRef<S> out, bool accumulate = false);

} // namespace mla::heal
