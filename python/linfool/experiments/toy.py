"""The blog's toy example: a 10-dimensional x, a binary logistic classifier w, and x + 0.5 w.

python -m linfool toy      # prints the blog's numbers: score -3, P = 0.0474; score 2, P = 0.88
"""

import numpy as np

X = np.array([2, -1, 3, -2, 2, 2, 1, -4, 5, 1], dtype=float)
W = np.array([-1, -1, 1, -1, 1, -1, 1, 1, -1, 1], dtype=float)
STEP = 0.5


def sigmoid(score):
    return 1.0 / (1.0 + np.exp(-score))


def toy_numbers() -> dict:
    """Score and P(class 1) before and after x <- x + 0.5 w (each input moves by only 0.5)."""
    adversarial = X + STEP * W
    return {
        "x": X,
        "w": W,
        "x_adv": adversarial,
        "score": float(W @ X),
        "prob": float(sigmoid(W @ X)),
        "score_adv": float(W @ adversarial),
        "prob_adv": float(sigmoid(W @ adversarial)),
    }


def describe() -> str:
    n = toy_numbers()
    return (
        f"x = {n['x'].astype(int).tolist()}\nw = {n['w'].astype(int).tolist()}\n"
        f"w.x = {n['score']:g}, P(class 1) = {n['prob']:.4f}\n"
        f"x + {STEP}w: w.x = {n['score_adv']:g}, P(class 1) = {n['prob_adv']:.2f}"
    )


def main(argv=None) -> int:
    """`python -m linfool toy`: print the blog's toy numbers."""
    print(describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
