"""Which pixels of a patch a pre-training batch uses: uniform draws or a Hilbert curve.

:func:`sample_pixels` draws ``(row, col)`` positions in a ``height × width`` patch, either
uniformly at random or evenly spaced along a Hilbert curve (:func:`hilbert_curve_order`),
which spreads them over the patch as in the paper. Host-side NumPy.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLING_METHODS: tuple[str, ...] = ("uniform", "hilbert")


def _hilbert_d2xy(order: int, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hilbert curve position ``distance`` → ``(x, y)`` on a ``2**order`` square.

    The classic iterative conversion (Wikipedia, "Hilbert curve"), vectorised over
    ``distance``. The curve starts at ``(0, 0)`` and ends at ``(n - 1, 0)``.
    """
    x = np.zeros_like(distance)
    y = np.zeros_like(distance)
    t = distance.copy()
    s = 1
    while s < (1 << order):
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        # Rotate the sub-square so the pieces join end to end.
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x = x + s * rx
        y = y + s * ry
        t = t // 4
        s *= 2
    return x, y


@functools.lru_cache(maxsize=32)
def _hilbert_curve_order_cached(height: int, width: int) -> np.ndarray:
    side = 1
    order = 0
    while side < max(height, width):
        side *= 2
        order += 1
    x, y = _hilbert_d2xy(order, np.arange(side * side, dtype=np.int64))
    inside = (y < height) & (x < width)
    flat = (y * width + x)[inside]
    flat.flags.writeable = False
    return flat


def hilbert_curve_order(height: int, width: int) -> np.ndarray:
    """Flat pixel indices (``row * width + col``) in the order a Hilbert curve visits them.

    The curve is the classic one on the ``n × n`` square, ``n`` the next power of two
    ``>= max(height, width)``, with ``x`` the column and ``y`` the row: it starts at pixel
    (0, 0), and on a 2×2 grid visits (row, col) = (0, 0), (1, 0), (1, 1), (0, 1). For
    non-power-of-two shapes the pixels outside ``height × width`` are dropped, so the
    order stays a permutation but a few consecutive pixels are no longer 4-neighbours.

    Returns:
      ``(height * width,)`` int64 permutation of ``range(height * width)`` (read-only).
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height} x {width}")
    return _hilbert_curve_order_cached(int(height), int(width))


def sample_pixels(
    rng: np.random.Generator, height: int, width: int, num: int, method: str = "uniform"
) -> np.ndarray:
    """Samples ``num`` pixel positions of a ``height × width`` grid.

    Methods:
      - ``"uniform"``: uniformly at random, without replacement when
        ``num <= height * width`` (with replacement otherwise).
      - ``"hilbert"``: ``num`` evenly spaced positions along the Hilbert curve
        (:func:`hilbert_curve_order`), shifted by one random offset in ``[0, spacing)``.
        Since the curve preserves locality, evenly spaced curve positions are spread
        evenly over the patch: every region of ``height * width / num`` pixels gets about
        one sample. With ``num > height * width`` positions wrap around the curve.

    Returns:
      ``(num, 2)`` int64 ``(row, col)`` positions.
    """
    total = height * width
    if total < 1:
        raise ValueError(f"cannot sample pixels from an empty {height} x {width} grid")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if method == "uniform":
        flat = rng.choice(total, size=num, replace=num > total)
    elif method == "hilbert":
        spacing = total / max(num, 1)
        positions = np.floor(rng.uniform(0.0, spacing) + spacing * np.arange(num)).astype(np.int64)
        flat = hilbert_curve_order(height, width)[positions % total]
    else:
        raise ValueError(
            f"unknown pixel sampling method {method!r}; choose from {SAMPLING_METHODS}"
        )
    return np.stack(np.divmod(flat.astype(np.int64), width), axis=-1)
