// linfool's own test of its softmax patch (tools/caffe_patches/07-softmax-rows.patch: the CPU forward
// runs its rows on OpenMP's threads once a blob holds >= 2^16 values). Caffe's own softmax tests use a
// 2 x 10 x 2 x 3 blob, which stays on the one-thread path; these shapes take the threaded one. Built and
// run by `make test-caffe` beside Caffe's own tests, against the cached libcaffe.
//
// For a batch of the blog's shape (256 x 1000 scores, inner 1) and one with inner > 1 (64 x 16 x 8 x 8,
// each row's scale a slice of 64 values), on 2 threads and on 1:
// 1. every probability is the softmax of its scores (to 1e-5, against a double-precision loop that
//    subtracts the row's maximum as Caffe does), and
// 2. the two thread counts give the same bits: a value's arithmetic does not depend on its thread.
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
