#include "tensor/tensor.h"

#include "tensor/kernels.h"
#include "util/error.h"
#include "util/half.h"

#include <cstring>

namespace mla {

std::optional<DType> dtypeFromUserName(std::string_view name)
{
    if (name == "f32" || name == "F32" || name == "float32")
        return DType::F32;
    if (name == "f16" || name == "F16" || name == "float16")
        return DType::F16;
    if (name == "bf16" || name == "BF16" || name == "bfloat16")
        return DType::BF16;
    return std::nullopt;
}

Tensor::Tensor(DType dtype, std::vector<std::int64_t> shape, const void* data, std::shared_ptr<const void> owner)
    : m_dtype(dtype), m_shape(std::move(shape)), m_data(data), m_owner(std::move(owner))
{
}

std::int64_t Tensor::cols() const
{
    if (m_shape.size() < 2)
        return 1;
    std::int64_t n = 1;
    for (std::size_t i = 1; i < m_shape.size(); ++i)
        n *= m_shape[i];
    return n;
}

std::int64_t Tensor::numel() const
{
    if (m_shape.empty())
        return 0;
    std::int64_t n = 1;
    for (auto d : m_shape)
        n *= d;
    return n;
}

Tensor Tensor::fromFloats(DType dtype, std::vector<std::int64_t> shape, const float* values)
{
    std::int64_t n = 1;
    for (auto d : shape)
        n *= d;
    auto buffer = std::shared_ptr<std::uint8_t[]>(new std::uint8_t[static_cast<std::size_t>(n) * dtypeSize(dtype) + 1]);
    convertFromFloat(dtype, values, buffer.get(), static_cast<std::size_t>(n));
    const void* data = buffer.get();
    return Tensor(dtype, std::move(shape), data, std::shared_ptr<const void>(buffer, buffer.get()));
}

Tensor Tensor::fromMatrix(const MatrixRM& m)
{
    return fromFloats(DType::F32, {m.rows(), m.cols()}, m.data());
}

Tensor Tensor::fromVector(const VectorF& v)
{
    return fromFloats(DType::F32, {v.size()}, v.data());
}

void Tensor::rowToFloat(std::int64_t row, float* out) const
{
    convertToFloat(m_dtype, rowBytes(row), out, static_cast<std::size_t>(cols()));
}

void Tensor::rowsToFloat(std::int64_t firstRow, std::int64_t count, float* out) const
{
    convertToFloat(m_dtype, rowBytes(firstRow), out, static_cast<std::size_t>(count * cols()));
}

MatrixRM Tensor::toMatrix() const
{
    MatrixRM m(rows(), cols());
    if (numel() > 0)
        convertToFloat(m_dtype, m_data, m.data(), static_cast<std::size_t>(numel()));
    return m;
}

VectorF Tensor::toVector() const
{
    VectorF v(numel());
    if (numel() > 0)
        convertToFloat(m_dtype, m_data, v.data(), static_cast<std::size_t>(numel()));
    return v;
}

std::vector<float> Tensor::toFloats() const
{
    std::vector<float> v(static_cast<std::size_t>(numel()));
    if (!v.empty())
        convertToFloat(m_dtype, m_data, v.data(), v.size());
    return v;
}

Tensor Tensor::rowSlice(std::int64_t first, std::int64_t count) const
{
    if (first < 0 || count < 0 || first + count > rows())
        throw Error("internal: row slice [" + std::to_string(first) + ", " + std::to_string(first + count)
                    + ") outside a tensor of " + std::to_string(rows()) + " rows");
    std::vector<std::int64_t> shape = m_shape;
    shape[0] = count;
    return Tensor(m_dtype, std::move(shape), rowBytes(first), m_owner);
}

std::string shapeString(const std::vector<std::int64_t>& shape)
{
    std::string s = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i)
            s += ", ";
        s += std::to_string(shape[i]);
    }
    return s + "]";
}

void convertFromFloat(DType dtype, const float* src, void* dst, std::size_t count)
{
    switch (dtype) {
    case DType::F32:
        std::memcpy(dst, src, count * sizeof(float));
        return;
    case DType::F16: {
        auto* out = static_cast<std::uint16_t*>(dst);
        for (std::size_t i = 0; i < count; ++i)
            out[i] = floatToF16(src[i]);
        return;
    }
    case DType::BF16: {
        auto* out = static_cast<std::uint16_t*>(dst);
        for (std::size_t i = 0; i < count; ++i)
            out[i] = floatToBf16(src[i]);
        return;
    }
    }
}

} // namespace mla
