"""Random augmentations of image crops during pre-training, pure functions of a PRNG key.

* :func:`flip_rotate`: flips and 90° rotations, the default for every image view (the
  centre pixel stays the centre, so the crop still belongs to the same pixel).
* :func:`strong_augment`: the SimCLR-style chain (Chen et al., 2020) for the
  ``s2_image_aug`` view, the augmentation-only baseline pairing: a random resized crop,
  flips and rotations, spectral jitter (per-band gain and offset), Gaussian blur.

Every crop's draws depend only on the key and its row in the *global* batch (``rows``),
so the result does not depend on how the batch is split over devices. Inputs are the
model's normalised crops ``(n, k, k, C)`` float32 (about zero mean, unit variance per band).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# SimCLR's settings, read for multispectral crops of 16 px: the kept side fraction of the
# resized crop, the probability and strength of the spectral jitter (in standard deviations
# of each band), the probability and range of the blur's sigma (pixels).
CROP_SIDE: tuple[float, float] = (0.6, 1.0)
JITTER_PROBABILITY: float = 0.8
JITTER_GAIN_STD: float = 0.2
JITTER_OFFSET_STD: float = 0.2
BLUR_PROBABILITY: float = 0.5
BLUR_SIGMA: tuple[float, float] = (0.1, 1.5)
BLUR_RADIUS: int = 2


def _row_keys(rng: jax.Array, rows: jax.Array) -> jax.Array:
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(rng, rows)


def flip_rotate(rng: jax.Array, image: jax.Array, rows: jax.Array) -> jax.Array:
    """Random flips and 90° rotations of square crops ``(n, k, k, C)``; same shape.

    Args:
      rng: PRNG key.
      image: ``(n, k, k, C)`` crops.
      rows: ``(n,)`` int, each crop's row in the global batch.
    """
    draws = jax.vmap(lambda key: jax.random.randint(key, (2,), 0, 8))(_row_keys(rng, rows))
    flips, turns = draws[:, 0] % 2, draws[:, 1] % 4
    image = jnp.where(flips[:, None, None, None] == 1, image[:, :, ::-1], image)
    rotations = jnp.stack([jnp.rot90(image, k, axes=(1, 2)) for k in range(4)])
    return jnp.take_along_axis(rotations, turns[None, :, None, None, None], axis=0)[0]


def resized_crop(crop: jax.Array, side: jax.Array, top: jax.Array, left: jax.Array) -> jax.Array:
    """The square window of ``side`` pixels at (``top``, ``left``) of a ``(k, k, C)`` crop,
    resized to ``(k, k, C)`` by bilinear interpolation (half-pixel centres: output pixel
    ``i`` reads the input at ``top + (i + 0.5) · side / k − 0.5``)."""
    size = crop.shape[0]
    scale = size / side
    # scale_and_translate samples the input at (x + 0.5 − translation) / scale − 0.5.
    return jax.image.scale_and_translate(
        crop,
        crop.shape,
        (0, 1),
        jnp.stack([scale, scale]),
        jnp.stack([-top * scale, -left * scale]),
        method="linear",
        antialias=False,
    )


def _random_resized_crop(key: jax.Array, crop: jax.Array) -> jax.Array:
    """:func:`resized_crop` of a random window of ``CROP_SIDE`` of the side, anywhere inside."""
    size = crop.shape[0]
    side_key, row_key, col_key = jax.random.split(key, 3)
    side = jax.random.uniform(side_key, (), minval=CROP_SIDE[0], maxval=CROP_SIDE[1]) * size
    top = jax.random.uniform(row_key, ()) * (size - side)
    left = jax.random.uniform(col_key, ()) * (size - side)
    return resized_crop(crop, side, top, left)


def _jitter(key: jax.Array, crop: jax.Array) -> jax.Array:
    """With ``JITTER_PROBABILITY``: ``crop · exp(g) + o``, ``g``, ``o`` normal per band."""
    apply_key, gain_key, offset_key = jax.random.split(key, 3)
    channels = crop.shape[-1]
    gain = jnp.exp(JITTER_GAIN_STD * jax.random.normal(gain_key, (channels,)))
    offset = JITTER_OFFSET_STD * jax.random.normal(offset_key, (channels,))
    apply = jax.random.uniform(apply_key, ()) < JITTER_PROBABILITY
    return jnp.where(apply, crop * gain + offset, crop)


def gaussian_blur(crop: jax.Array, sigma: jax.Array) -> jax.Array:
    """A separable Gaussian blur of a ``(k, k, C)`` crop: ``2·BLUR_RADIUS + 1`` taps of
    weights ∝ ``exp(−x² / 2σ²)``, edge pixels repeated beyond the crop."""
    taps = jnp.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, dtype=jnp.float32)
    weights = jnp.exp(-0.5 * (taps / sigma) ** 2)
    weights = weights / weights.sum()
    size = crop.shape[0]
    for axis in (0, 1):
        pad = [(0, 0)] * crop.ndim
        pad[axis] = (BLUR_RADIUS, BLUR_RADIUS)
        padded = jnp.pad(crop, pad, mode="edge")
        crop = sum(
            weights[j] * jax.lax.slice_in_dim(padded, j, j + size, axis=axis)
            for j in range(2 * BLUR_RADIUS + 1)
        )
    return crop


def _blur(key: jax.Array, crop: jax.Array) -> jax.Array:
    """With ``BLUR_PROBABILITY``: :func:`gaussian_blur` of a random sigma in ``BLUR_SIGMA``."""
    apply_key, sigma_key = jax.random.split(key)
    sigma = jax.random.uniform(sigma_key, (), minval=BLUR_SIGMA[0], maxval=BLUR_SIGMA[1])
    apply = jax.random.uniform(apply_key, ()) < BLUR_PROBABILITY
    return jnp.where(apply, gaussian_blur(crop, sigma), crop)


def strong_augment(rng: jax.Array, image: jax.Array, rows: jax.Array) -> jax.Array:
    """SimCLR-style augmentation of normalised crops ``(n, k, k, C)``; same shape and dtype.

    A random resized crop (``CROP_SIDE`` of the side, bilinear back to ``k``), then flips
    and rotations (:func:`flip_rotate`), spectral jitter and Gaussian blur, each crop with
    its own draws (``rows``: ``(n,)`` int, the crops' rows in the global batch).
    """
    keys = _row_keys(rng, rows)

    def one(key: jax.Array, crop: jax.Array) -> jax.Array:
        crop_key, jitter_key, blur_key = jax.random.split(key, 3)
        crop = _random_resized_crop(crop_key, crop)
        return _blur(blur_key, _jitter(jitter_key, crop))

    cropped = jax.vmap(one)(keys, image.astype(jnp.float32))
    return flip_rotate(jax.random.fold_in(rng, 7), cropped, rows).astype(image.dtype)
