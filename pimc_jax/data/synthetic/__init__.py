"""Deterministic synthetic PASTIS-like data: the default data of every command.

A synthetic patch is a square of agricultural parcels observed on a variable number of
irregular dates within one year (2019). Each parcel carries one class from
:data:`~pimc_jax.data.classes.SYNTHETIC_CLASS_NAMES`; each class has a phenology, a
greenness curve over the day of year (a double logistic: winter level, green-up, peak,
senescence, post-harvest level), plus class-specific extras (rapeseed and sunflower
flowering, grassland mowing).

Reflectance is a linear mixture of endmember spectra (bare soil, green vegetation,
yellow flowers) weighted by greenness, so NDVI/EVI/SAVI computed from the bands track the
class curve: NIR rises and red/blue/SWIR fall as a parcel greens up. On top of that:

- per-parcel jitter of the phenology (date shift, peak amplitude) and per-pixel jitter, so
  classes overlap and the task is not trivial (maize and soybean are deliberately close);
- time-invariant, class-dependent texture (row stripes with a per-parcel orientation,
  speckle) and soil brightness, so a single-date crop around a pixel carries information
  about the pixel's class, as its time series does: this shared information is what the
  pixel/image contrastive pre-training can exploit;
- field margins (hedges, roads) and some whole parcels are background (class 0);
- per-date illumination changes, Gaussian noise, clouds (bright blobs, all bands ~0.4-0.6)
  on about a fifth of the dates, and rarely a no-data (NaN) swath edge.

With ``s1=True`` a patch also carries a Sentinel-1 series consistent with the same parcels
(:mod:`~pimc_jax.data.synthetic.sentinel1`): VV and VH backscatter of a water-cloud model
driven by each pixel's green cover and by the parcel's soil moisture (a wet-winter season
plus rain events that dry out within days), on its own irregular 6/12-day dates within the
Sentinel-2 period, with multiplicative gamma speckle of ``s1_looks`` looks; clouds do not
affect it.

Everything is vectorised NumPy and seeded by ``(seed, index)``: the same arguments give the
same arrays on every machine, and patch ``i`` does not depend on how many patches are made.

:func:`~pimc_jax.data.synthetic.eurosat.make_image_classification_set` builds a EuroSAT
stand-in (ten land-cover scene classes at one date) from the same endmember spectra, hard
on purpose: any season, soil and illumination changes, haze, and sensor noise that grows at
low sun.

Modules: :mod:`~pimc_jax.data.synthetic.spectra` (phenology, endmember spectra),
:mod:`~pimc_jax.data.synthetic.sentinel2` (the patches),
:mod:`~pimc_jax.data.synthetic.sentinel1` (their radar series),
:mod:`~pimc_jax.data.synthetic.eurosat` (the EuroSAT stand-in).
"""

from pimc_jax.data.synthetic.eurosat import make_image_classification_set
from pimc_jax.data.synthetic.sentinel2 import make_patch, make_patches
from pimc_jax.data.synthetic.spectra import SYNTHETIC_PHENOLOGY, Phenology

__all__ = [
    "SYNTHETIC_PHENOLOGY",
    "Phenology",
    "make_image_classification_set",
    "make_patch",
    "make_patches",
]
