"""linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" (2015), reproduced with real Caffe.

Data flows images -> LMDB (linfool.lmdb_builder) -> `caffe train` (linfool.train) -> snapshot ->
weights (linfool.weights) -> figures (linfool.figures) -> report (linfool.report).
"""
__version__ = "0.1.0"
