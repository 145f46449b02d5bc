"""The trained classifier: `caffe train` (train), its curves (curves), the weights of a snapshot
(weights) and the model wrapper every experiment goes through (classifier). Imports linfool.core."""
