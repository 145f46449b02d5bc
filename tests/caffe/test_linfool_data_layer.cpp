// linfool's own test of its Data-layer patch (tools/caffe_patches/04-zero-copy.patch: the top blob takes
// the prefetched batch's memory instead of a copy). Built and run by `make test-caffe` beside Caffe's
// own tests, against the cached libcaffe, under valgrind when it is installed.
//
// 1. Records whose size changes (small, big, small, small, big values), batch 1: every forward gives
//    the record's shape and values, and nothing is written past a blob's memory (the patch's first
//    version swapped a small memory into a top that remembered a larger capacity; the next big batch overflowed it).
// 2. Records of one shape: the values are right and the top's memory changes between forwards, i.e.
//    the zero-copy swap is taken (the stock layer copies into the same memory every time).
#ifdef USE_OPENCV
#include <set>
#include <string>
#include <vector>

#include "boost/scoped_ptr.hpp"
#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/layers/data_layer.hpp"
#include "caffe/proto/caffe.pb.h"
#include "caffe/util/db.hpp"
#include "caffe/util/io.hpp"

#include "caffe/test/test_caffe_main.hpp"

namespace caffe {

using boost::scoped_ptr;

template <typename TypeParam>
class LinfoolDataLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  LinfoolDataLayerTest()
      : blob_top_data_(new Blob<Dtype>()), blob_top_label_(new Blob<Dtype>()) {}
  virtual void SetUp() {
    MakeTempDir(&filename_);
    filename_ += "/db";
    blob_top_vec_.push_back(blob_top_data_);
    blob_top_vec_.push_back(blob_top_label_);
  }
  virtual ~LinfoolDataLayerTest() {
    delete blob_top_data_;
    delete blob_top_label_;
  }

  // Value j of record i: (i * 16 + j) % 256, so that every record and position differs.
  static int Value(int record, int j) { return (record * 16 + j) % 256; }

  // An LMDB with one 1 x 1 x widths[i] record per entry, label i.
  void Fill(const vector<int>& widths) {
    scoped_ptr<db::DB> db(db::GetDB(DataParameter_DB_LMDB));
    db->Open(filename_, db::NEW);
    scoped_ptr<db::Transaction> txn(db->NewTransaction());
    for (int i = 0; i < widths.size(); ++i) {
      Datum datum;
      datum.set_label(i);
      datum.set_channels(1);
      datum.set_height(1);
      datum.set_width(widths[i]);
      for (int j = 0; j < widths[i]; ++j) {
        datum.mutable_data()->push_back(static_cast<char>(Value(i, j)));
      }
      string out;
      CHECK(datum.SerializeToString(&out));
      char key[16];
      snprintf(key, sizeof(key), "%08d", i);
      txn->Put(string(key), out);
    }
    txn->Commit();
    db->Close();
  }

  LayerParameter Param(int batch_size) {
    LayerParameter param;
    param.set_phase(TEST);
    DataParameter* data_param = param.mutable_data_param();
    data_param->set_batch_size(batch_size);
    data_param->set_source(filename_.c_str());
    data_param->set_backend(DataParameter_DB_LMDB);
    return param;
  }

  const void* TopMemory() {
    return Caffe::mode() == Caffe::CPU ? static_cast<const void*>(blob_top_data_->cpu_data())
                                       : static_cast<const void*>(blob_top_data_->gpu_data());
  }

  string filename_;
  Blob<Dtype>* const blob_top_data_;
  Blob<Dtype>* const blob_top_label_;
  vector<Blob<Dtype>*> blob_bottom_vec_;
  vector<Blob<Dtype>*> blob_top_vec_;
};

TYPED_TEST_CASE(LinfoolDataLayerTest, TestDtypesAndDevices);

TYPED_TEST(LinfoolDataLayerTest, TestShapeChangesSmallBigSmallSmallBig) {
  typedef typename TypeParam::Dtype Dtype;
  const int widths[] = {2, 8, 2, 2, 8};
  const vector<int> sizes(widths, widths + 5);
  this->Fill(sizes);
  DataLayer<Dtype> layer(this->Param(1));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  for (int iter = 0; iter < 4 * sizes.size(); ++iter) {    // four passes over the LMDB
    const int record = iter % sizes.size();
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    ASSERT_EQ(this->blob_top_data_->count(), sizes[record]) << "iter " << iter;
    EXPECT_EQ(record, this->blob_top_label_->cpu_data()[0]);
    for (int j = 0; j < sizes[record]; ++j) {
      EXPECT_EQ(this->Value(record, j), static_cast<int>(this->blob_top_data_->cpu_data()[j]))
          << "iter " << iter << " j " << j;
    }
  }
}

TYPED_TEST(LinfoolDataLayerTest, TestFixedShapeSwapsMemoryAndKeepsValues) {
  typedef typename TypeParam::Dtype Dtype;
  const vector<int> sizes(6, 5);
  this->Fill(sizes);
  DataLayer<Dtype> layer(this->Param(2));
  layer.SetUp(this->blob_bottom_vec_, this->blob_top_vec_);
  std::set<const void*> memories;
  for (int iter = 0; iter < 12; ++iter) {
    layer.Forward(this->blob_bottom_vec_, this->blob_top_vec_);
    memories.insert(this->TopMemory());
    for (int item = 0; item < 2; ++item) {
      const int record = (2 * iter + item) % sizes.size();
      EXPECT_EQ(record, this->blob_top_label_->cpu_data()[item]);
      for (int j = 0; j < 5; ++j) {
        EXPECT_EQ(this->Value(record, j), static_cast<int>(this->blob_top_data_->cpu_data()[item * 5 + j]))
            << "iter " << iter << " item " << item << " j " << j;
      }
    }
  }
  EXPECT_GE(memories.size(), 2) << "the top kept one memory: the zero-copy swap was not taken";
}

}  // namespace caffe
#endif  // USE_OPENCV
