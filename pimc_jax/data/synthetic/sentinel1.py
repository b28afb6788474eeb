"""Synthetic Sentinel-1 beside the synthetic Sentinel-2 patches: VV and VH backscatter of
a water-cloud model driven by the same parcels' green cover and the scene's soil moisture,
on irregular 6/12-day dates, with gamma speckle.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pimc_jax.data.synthetic.spectra import DAYS_IN_YEAR

# Sentinel-1 (:func:`sentinel1_series`). Water-cloud model per polarisation: canopy A, B and soil
# backscatter C (dB of dry soil) + D (dB per m³/m³ of volumetric moisture).
_S1_WATER_CLOUD: dict[str, tuple[float, float, float, float]] = {
    "VV": (0.10, 0.30, -20.0, 25.0),
    "VH": (0.025, 0.20, -27.0, 20.0),
}
# The canopy descriptor (vegetation water content, kg/m²) is this times the green cover.
_S1_CANOPY_PER_COVER = 2.0
# Passes 6 days apart (12 when one is skipped); some passes are missing.
_S1_GAPS_DAYS = (6, 12)
_S1_MISSING_PASS = 0.1
_S1_INCIDENCE_DEG = (30.0, 45.0)


def s1_acquisition_days(rng: np.random.Generator, s2_days: np.ndarray) -> np.ndarray:
    """Sorted S1 days of year within ``[s2_days[0], s2_days[-1]]``: passes 6 or 12 days
    apart from a random start, a tenth of them missing (at least one day)."""
    first, last = int(s2_days[0]), int(s2_days[-1])
    day, found = first + int(rng.integers(0, _S1_GAPS_DAYS[0])), []
    while day <= last:
        if rng.random() >= _S1_MISSING_PASS:
            found.append(day)
        day += int(rng.choice(_S1_GAPS_DAYS, p=(0.75, 0.25)))
    return np.asarray(found or [first], dtype=np.int64)


def _soil_moisture(rng: np.random.Generator, days: np.ndarray) -> np.ndarray:
    """``(T,)`` volumetric soil moisture (m³/m³) of the scene on days of year ``days``.

    A wet winter and a dry summer (0.16-0.32) plus rain events (a sixth of the days) that
    add 0.03-0.12 and dry out with a 4-day time constant.
    """
    span = np.arange(int(days[0]) - 30, int(days[-1]) + 1)  # a month of spin-up
    rain = np.where(rng.random(span.size) < 1 / 6, rng.uniform(0.03, 0.12, span.size), 0.0)
    wet = np.zeros(span.size)
    for t in range(span.size):
        wet[t] = (wet[t - 1] * np.exp(-1 / 4) if t else 0.0) + rain[t]
    seasonal = 0.24 + 0.08 * np.cos(2 * np.pi * (span - 15) / DAYS_IN_YEAR)
    return np.clip(seasonal + wet, 0.05, 0.45)[days - span[0]]


def sentinel1_series(
    rng: np.random.Generator,
    days: np.ndarray,
    cover_on: Callable[[np.ndarray], np.ndarray],
    parcel: np.ndarray,
    num_parcels: int,
    background: np.ndarray,
    looks: float,
) -> np.ndarray:
    """``(T1, H, W, 3)`` float32 Sentinel-1 VV, VH and VV/VH in dB on days of year ``days``.

    Water-cloud model (Attema & Ulaby 1978), per polarisation with ``(A, B, C, D)`` of
    :data:`_S1_WATER_CLOUD`, canopy ``V = 2 · green cover`` (``cover_on``) and incidence θ
    (30-45°, per date)::

        τ² = exp(−2 B V / cos θ)
        σ0 = A V cos θ (1 − τ²) + τ² · 10^((C + D · mv + r) / 10)

    with ``mv`` the soil moisture (:func:`_soil_moisture`, times a per-parcel drainage
    factor 0.8-1.2) and ``r`` a per-parcel roughness offset in dB (std 1 dB; built-up
    ``background`` pixels +3 dB). VH rises with the canopy, VV with the soil moisture and
    the canopy. Each value is multiplied by independent gamma speckle of ``looks`` looks
    (mean 1, variance 1 / looks).
    """
    doy = days.astype(np.float32)[:, None, None]
    canopy = _S1_CANOPY_PER_COVER * cover_on(doy).astype(np.float64)  # (T1, H, W)
    moisture = _soil_moisture(rng, days)[:, None, None] * rng.uniform(0.8, 1.2, num_parcels)[parcel]
    roughness = rng.normal(0.0, 1.0, num_parcels)[parcel] + 3.0 * background
    theta = np.deg2rad(rng.uniform(*_S1_INCIDENCE_DEG, days.size))[:, None, None]
    cos_theta = np.cos(theta)
    sigma = {}
    for pol, (a, b, c, d) in _S1_WATER_CLOUD.items():
        tau2 = np.exp(-2.0 * b * canopy / cos_theta)
        soil = 10.0 ** ((c + d * moisture + roughness) / 10.0)
        clean = a * canopy * cos_theta * (1.0 - tau2) + tau2 * soil
        sigma[pol] = clean * rng.gamma(looks, 1.0 / looks, clean.shape)
    vv, vh = (10.0 * np.log10(sigma[pol]) for pol in ("VV", "VH"))
    return np.stack([vv, vh, vv - vh], axis=-1).astype(np.float32)
