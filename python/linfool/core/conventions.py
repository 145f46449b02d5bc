"""The numbers and names every stage shares, each written once.

IMAGE_SHAPE  (3, 64, 64): an image as Caffe's Data layer reads it, BGR channel-major, uint8 0..255
             (the blog's 64x64 ImageNet); PIXELS = 12,288 inputs of the linear classifier.
SEED         1701: prototxt/solver.prototxt's random_seed, and the seed of every sample linfool draws
             (train shuffle, val subsets, pairs, attacks' noise), so that two runs of a stage agree.
DEMO_DATA    'synthetic': the embedded data set (`make data` without IMAGENET=).
DEMO_RUN     'blog': the embedded set's blog-settings run; its sweep is reg_low / reg_high.
Standard library only (linfool.core.stages reads it before anything is set up).
"""

IMAGE_SHAPE = (3, 64, 64)
PIXELS = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
SEED = 1701
DEMO_DATA = "synthetic"
DEMO_RUN = "blog"


def default_run(data: str | None = None) -> str:
    """The run a stage works on when RUN= is not given: 'blog' on the embedded set (or no DATA=),
    else the data set's name (DATA=imagenet -> imagenet)."""
    return DEMO_RUN if data in (None, "", DEMO_DATA) else data
