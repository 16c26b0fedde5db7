"""Seeded image augmentation of training batches: random shifts and horizontal flips.

Draws come from the model's ``noise_rng`` (so a seed fixes them on every backend); the pixel work
is the backend's ``shift_flip_images``. Inputs are batches of flattened HWC images, already
normalised, so the zero fill of a shift is the dataset mean.
"""

from __future__ import annotations

import numpy as np

from fastnn.backends import get_backend
from fastnn.validation import check_positive_int


class Augmentation:
    """Random integer shifts in [-max_shift, max_shift] along both axes, and left-right flips.

    image_shape : (H, W, C) of the flattened rows. max_shift : pixels, ≥ 0. flip : mirror a random half
    of the images left to right.
    """

    def __init__(self, image_shape: tuple[int, int, int], max_shift: int = 2, flip: bool = False):
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (H, W, C), got {image_shape!r}.")
        self.image_shape = tuple(check_positive_int(f"image_shape[{i}]", v) for i, v in enumerate(image_shape))
        self.max_shift = check_positive_int("max_shift", max_shift, minimum=0)
        self.flip = bool(flip)
        self._buffer: np.ndarray | None = None

    def __call__(self, model, X: np.ndarray) -> np.ndarray:
        """Return an augmented copy of the batch ``X`` (N, H·W·C) in a reused buffer."""
        n = X.shape[0]
        if self._buffer is None or self._buffer.shape[0] < n or self._buffer.shape[1] != X.shape[1] \
                or self._buffer.dtype != X.dtype:
            self._buffer = np.empty(X.shape, X.dtype)
        rng = model.noise_rng
        k = self.max_shift
        shifts = rng.integers(-k, k + 1, size=(2, n)) if k else np.zeros((2, n), dtype=np.int64)
        flips = rng.random(n) < 0.5 if self.flip else np.zeros(n, dtype=bool)
        # the checked operation: X may come from anywhere, not only from the training loop
        return get_backend(model.backend).shift_flip_images(X, self.image_shape, shifts[0], shifts[1],
                                                            flips, self._buffer[:n])
