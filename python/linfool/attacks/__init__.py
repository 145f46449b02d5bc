"""The attacks, one module each, and the numbers they share. Above the model wrappers, below the
experiments: a stage imports attacks, never another stage.

    blog       the blog's attack: x + alpha * w_target, alpha by bisection (fool, fool_each, noise_image)
    linf       the Linf-optimal directions of a linear model, the fraction fooled per budget, and the
               closed-form bound no Linf attack can beat (directions, fooled_at, bound_epsilon)
    gradient   gradient attacks through Caffe's backward pass (gradient_step, sign_step, projected)
    square     the square attack with scores only, and its query-counting oracle (Oracle, square_attack)

Images are (n, 3, 64, 64) float32 BGR in 0..255 as Caffe's Data layer reads them; a pair is fooled
when P(target) >= CONFIDENCE after clipping to 0..255.
"""

import numpy as np

CONFIDENCE = 0.99  # "fooled": the blog's "with near 100 % confidence", written P(target) >= 0.99
EPSILONS = np.arange(256)  # every whole-pixel Linf budget, 0..255: the attack curves' x axis
LADDER = (1, 2, 4, 8, 16, 32, 64, 128)  # doubling Linf budgets (0..255 pixels) of the gradient attacks
IMAGES_PER_FORWARD = 1024  # images per pycaffe forward in the batched attacks and measurements
