"""Image augmentation kernels: whole-pixel shifts with zero fill and left-right flips.

Serial loop (memory-bound work beside a GEMM-bound step); writes only ``out``.
"""

from __future__ import annotations

from fastnn.kernels import kernel


@kernel()
def shift_flip_images_kernel(X, H, W, C, shift_rows, shift_cols, flip, out):
    """Shift each flattened HWC image by whole pixels (zero fill), mirrored left-right if ``flip``.

    ``out[k, r, c] = X[k, r - shift_rows[k], c' - shift_cols[k]]`` with ``c' = W-1-c`` when
    ``flip[k]``, else ``c``; 0 where the source lies outside. X, out : (N, H·W·C); out overwritten.
    """
    zero = out.dtype.type(0.0)
    for k in range(X.shape[0]):
        dy, dx = shift_rows[k], shift_cols[k]
        for r in range(H):
            src_r = r - dy
            for c in range(W):
                cc = W - 1 - c if flip[k] else c
                src_c = cc - dx
                dst = (r * W + c) * C
                if 0 <= src_r < H and 0 <= src_c < W:
                    src = (src_r * W + src_c) * C
                    for ch in range(C):
                        out[k, dst + ch] = X[k, src + ch]
                else:
                    for ch in range(C):
                        out[k, dst + ch] = zero
