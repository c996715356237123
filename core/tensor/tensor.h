#pragma once

#include "tensor/dtype.h"

#include <Eigen/Core>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mla {

using MatrixRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixRMd = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using VectorF = Eigen::VectorXf;

// A read-only view of a weight tensor in its stored dtype, row-major, plus a handle that keeps the backing storage
// (a memory map or an owned buffer) alive. Matrices are [out_features, in_features] as in PyTorch.
class Tensor {
public:
    Tensor() = default;
    Tensor(DType dtype, std::vector<std::int64_t> shape, const void* data, std::shared_ptr<const void> owner);

    static Tensor fromMatrix(const MatrixRM& m);
    static Tensor fromVector(const VectorF& v);
    // Converts float32 values into an owned tensor of the given dtype (round to nearest even).
    static Tensor fromFloats(DType dtype, std::vector<std::int64_t> shape, const float* values);

    bool empty() const { return m_data == nullptr; }
    DType dtype() const { return m_dtype; }
    const std::vector<std::int64_t>& shape() const { return m_shape; }
    int rank() const { return static_cast<int>(m_shape.size()); }
    std::int64_t rows() const { return m_shape.empty() ? 0 : m_shape[0]; }
    std::int64_t cols() const;
    std::int64_t numel() const;
    std::size_t bytes() const { return static_cast<std::size_t>(numel()) * dtypeSize(m_dtype); }
    const void* data() const { return m_data; }
    const std::shared_ptr<const void>& owner() const { return m_owner; }

    const std::uint8_t* rowBytes(std::int64_t row) const
    {
        return static_cast<const std::uint8_t*>(m_data) + static_cast<std::size_t>(row * cols()) * dtypeSize(m_dtype);
    }
    void rowToFloat(std::int64_t row, float* out) const;
    void rowsToFloat(std::int64_t firstRow, std::int64_t count, float* out) const;

    MatrixRM toMatrix() const;
    VectorF toVector() const;
    std::vector<float> toFloats() const;

    // A view of rows [first, first+count) sharing storage.
    Tensor rowSlice(std::int64_t first, std::int64_t count) const;

private:
    DType m_dtype = DType::F32;
    std::vector<std::int64_t> m_shape;
    const void* m_data = nullptr;
    std::shared_ptr<const void> m_owner;
};

std::string shapeString(const std::vector<std::int64_t>& shape);

// Converts `count` elements of the given dtype to float32 (vectorised where the CPU allows).
void convertToFloat(DType dtype, const void* src, float* dst, std::size_t count);
void convertFromFloat(DType dtype, const float* src, void* dst, std::size_t count);

} // namespace mla
