// linfool's own test of its softmax patch (tools/caffe_patches/07-softmax-rows.patch: the CPU forward
// runs its rows on OpenMP's threads once a blob holds >= 2^16 values). Caffe's own softmax tests use a
// 2 x 10 x 2 x 3 blob, which stays on the one-thread path; these shapes take the threaded one. Built and
// run by `make test-caffe` beside Caffe's own tests, against the cached libcaffe.
//
// For a batch of the blog's shape (256 x 1000 scores, inner 1) and one with inner > 1 (64 x 16 x 8 x 8,
// each row's scale a slice of 64 values), on 2 threads and on 1:
// 1. every probability has the bits of the stock loop's (Caffe's own calls per row: a K = 1 GEMM that
//    subtracts the maximum, caffe_exp, the GEMV that sums, caffe_div per channel), with exact ties and
//    zeros of both signs among the scores,
// 2. every probability is the softmax of its scores (to 1e-5, against a double-precision loop that
//    subtracts the row's maximum as Caffe does), and
// 3. the two thread counts give the same bits: a value's arithmetic does not depend on its thread.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/util/math_functions.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

template <typename Dtype>
class LinfoolSoftmaxRowsTest : public CPUDeviceTest<Dtype> {
 protected:
  // Scores with std 10, so that the row's maximum matters (exp(80) overflows float without it).
  void Fill(Blob<Dtype>* blob) {
    FillerParameter filler_param;
    filler_param.set_std(10);
    GaussianFiller<Dtype> filler(filler_param);
    filler.Fill(blob);
    // Ties and zeros of both signs: where the maximum's order or a zero's sign could matter.
    Dtype* data = blob->mutable_cpu_data();
    for (int i = 0; i < blob->count(); i += 7) data[i] = (i / 7) % 3 == 0 ? Dtype(0) : -Dtype(0);
    for (int i = 3; i + 5 < blob->count(); i += 11) data[i] = data[i + 5];
    // The second image's scores are <= 0, so that its maxima are zeros (of either sign).
    const int dim = blob->count() / blob->shape(0);
    for (int i = dim; i < 2 * dim; ++i) {
      if (i % 7 != 0) data[i] = -std::fabs(data[i]) - 1;  // the zeros above stay
    }
  }

  // Caffe's stock CPU forward, one row after the other (softmax_layer.cpp before linfool's patch).
  vector<Dtype> StockForward(const Blob<Dtype>& bottom, int num, int channels, int inner) {
    vector<Dtype> top(bottom.cpu_data(), bottom.cpu_data() + bottom.count());
    vector<Dtype> scale(inner), multiplier(channels, Dtype(1));
    const int dim = channels * inner;
    Dtype* top_data = &top[0];
    for (int i = 0; i < num; ++i) {
      caffe_copy(inner, bottom.cpu_data() + i * dim, &scale[0]);
      for (int j = 0; j < channels; j++) {
        for (int k = 0; k < inner; k++) {
          scale[k] = std::max(scale[k], bottom.cpu_data()[i * dim + j * inner + k]);
        }
      }
      caffe_cpu_gemm<Dtype>(CblasNoTrans, CblasNoTrans, channels, inner, 1, -1., &multiplier[0], &scale[0], 1.,
          top_data);
      caffe_exp<Dtype>(dim, top_data, top_data);
      caffe_cpu_gemv<Dtype>(CblasTrans, channels, inner, 1., top_data, &multiplier[0], 0., &scale[0]);
      for (int j = 0; j < channels; j++) {
        caffe_div(inner, top_data, &scale[0], top_data);
        top_data += inner;
      }
    }
    return top;
  }

  // The layer's forward of `bottom` on `threads` OpenMP threads; the previous thread count is restored.
  vector<Dtype> Forward(Blob<Dtype>* bottom, int threads) {
    const int before = omp_get_max_threads();
    omp_set_num_threads(threads);
    Blob<Dtype> top;
    vector<Blob<Dtype>*> bottom_vec(1, bottom), top_vec(1, &top);
    LayerParameter layer_param;
    SoftmaxLayer<Dtype> layer(layer_param);
    layer.SetUp(bottom_vec, top_vec);
    layer.Forward(bottom_vec, top_vec);
    omp_set_num_threads(before);
    return vector<Dtype>(top.cpu_data(), top.cpu_data() + top.count());
  }

  void Check(int num, int channels, int height, int width) {
    Blob<Dtype> bottom(num, channels, height, width);
    ASSERT_GE(bottom.count(), 1 << 16) << "the shape must take the patch's threaded path";
    Fill(&bottom);
    const vector<Dtype> two = Forward(&bottom, 2);
    const vector<Dtype> one = Forward(&bottom, 1);
    const int inner = height * width;
    const vector<Dtype> stock = StockForward(bottom, num, channels, inner);
    for (int i = 0; i < num; ++i) {
      for (int k = 0; k < inner; ++k) {
        double max = bottom.cpu_data()[i * channels * inner + k];
        for (int j = 0; j < channels; ++j) {
          max = std::max(max, static_cast<double>(bottom.cpu_data()[(i * channels + j) * inner + k]));
        }
        double sum = 0;
        for (int j = 0; j < channels; ++j) {
          sum += std::exp(bottom.cpu_data()[(i * channels + j) * inner + k] - max);
        }
        for (int j = 0; j < channels; ++j) {
          const int at = (i * channels + j) * inner + k;
          const double expected = std::exp(bottom.cpu_data()[at] - max) / sum;
          ASSERT_NEAR(expected, two[at], 1e-5) << "row " << i << ", class " << j << ", position " << k;
          ASSERT_EQ(0, memcmp(&two[at], &stock[at], sizeof(Dtype)))
              << "the stock loop's " << stock[at] << " and " << two[at] << " differ at row " << i << ", class " << j
              << ", position " << k;
          ASSERT_EQ(0, memcmp(&two[at], &one[at], sizeof(Dtype)))
              << "2 threads and 1 differ at row " << i << ", class " << j << ", position " << k;
        }
      }
    }
  }
};

TYPED_TEST_CASE(LinfoolSoftmaxRowsTest, TestDtypes);

TYPED_TEST(LinfoolSoftmaxRowsTest, TestBlogBatchOnThreads) { this->Check(256, 1000, 1, 1); }

TYPED_TEST(LinfoolSoftmaxRowsTest, TestInnerSlicesOnThreads) { this->Check(64, 16, 8, 8); }

}  // namespace caffe
