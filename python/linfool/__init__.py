"""linfool: Karpathy's "Breaking Linear Classifiers on ImageNet" (2015), reproduced with real Caffe.

Data flows images -> LMDB (linfool.data) -> `caffe train` (linfool.model.train) -> snapshot ->
weights (linfool.model.weights) -> attacks (linfool.attacks) -> experiments (linfool.experiments) ->
report (linfool.report), every stage through the run and data-set handles of linfool.core and
declared once in linfool.core.stages. Layers import only from below:
core <- data <- model <- attacks <- experiments <- report, and no stage imports another stage.
`python -m linfool --help` lists the stages.
"""

__version__ = "0.1.0"
