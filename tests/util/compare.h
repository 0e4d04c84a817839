// Error metrics for parity tests against reference dumps.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace voxrt::test {

struct ErrorStats {
    double max_abs = 0;  // max |a - b|
    double rel_l2 = 0;   // ||a - b|| / ||b||
    double ref_max = 0;  // max |b|
    std::string str() const;
};

ErrorStats compare(const float* a, const float* b, size_t n);

// Row-wise distribution agreement of logits a (candidate) vs b (reference), both [rows, n].
struct LogitStats {
    double top1_agree = 0;  // fraction of rows whose argmax agrees
    double mean_kl = 0;     // mean KL(softmax(b) || softmax(a))
    double max_kl = 0;
    int rows = 0;
    std::string str() const;
};
LogitStats compare_logits(const float* a, const float* b, int64_t rows, int64_t n);

// Reads a dump tensor (F32, BF16, I64, I32) as float / int64 vectors.
std::vector<float> read_f32(const io::SafeTensorsFile& f, const std::string& name);
std::vector<int64_t> read_i64(const io::SafeTensorsFile& f, const std::string& name);
std::vector<int64_t> shape_of(const io::SafeTensorsFile& f, const std::string& name);

}  // namespace voxrt::test
