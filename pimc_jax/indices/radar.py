"""Sentinel-1 radar series (VV, VH, their ratio, the cross ratio, RVI) in ``jax.numpy``."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp

from pimc_jax.indices.bands import check_numeric

#: Sentinel-1 channels of PASTIS-R (``DATA_S1A``/``DATA_S1D``) and of every S1 series a
#: :class:`~pimc_jax.data.patches.Patch` holds, in order: backscatter σ0 of VV and of VH in
#: dB, and their ratio VV/VH in dB (``VV_dB − VH_dB``).
S1_BAND_NAMES: tuple[str, ...] = ("VV", "VH", "VV/VH")
#: Radar series computable from VV and VH (:func:`radar_indices`), in their default order.
RADAR_INDEX_NAMES: tuple[str, ...] = ("vv", "vh", "ratio", "cross_ratio", "rvi")
#: Plausible backscatter σ0 ``(low, high)`` in dB: C-band σ0 of land lies within about
#: −35..+10 dB (urban corner reflectors reach +20); anything outside this closed interval
#: (or a non-positive linear value, −inf dB) is taken as a no-data marker.
PLAUSIBLE_BACKSCATTER_DB: tuple[float, float] = (-50.0, 30.0)

# Channels each radar series reads (canonical radar band names).
_RADAR_INDEX_BANDS: dict[str, tuple[str, ...]] = {
    "vv": ("VV",),
    "vh": ("VH",),
    "ratio": ("VV", "VH"),
    "cross_ratio": ("VV", "VH"),
    "rvi": ("VV", "VH"),
}
_RATIO_BAND = "VV/VH"


def canonical_radar_band_name(name: str) -> str:
    """Canonical spelling of a Sentinel-1 channel name: upper case, no spaces.

    ``"vv"`` → ``"VV"``, ``"vv / vh"`` → ``"VV/VH"``. Known channels are those of
    :data:`S1_BAND_NAMES`; any other name is only normalised.
    """
    if not isinstance(name, str):
        raise ValueError(f"radar band names must be strings, got {name!r}")
    return "".join(name.split()).upper()


def check_radar_band_names(band_names: Sequence[str]) -> tuple[str, ...]:
    """``band_names`` in canonical form, each one of :data:`S1_BAND_NAMES`, none twice.

    Raises:
      ValueError: one line naming the unknown or repeated names.
    """
    if isinstance(band_names, str):
        raise ValueError(f"radar band names must be a sequence of names, got {band_names!r}")
    names = tuple(canonical_radar_band_name(name) for name in band_names)
    unknown = [name for name in names if name not in S1_BAND_NAMES]
    if unknown:
        raise ValueError(f"unknown Sentinel-1 band names {unknown}; known: {S1_BAND_NAMES}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"Sentinel-1 band names {names} name {repeated} twice")
    return names


def resolve_radar_indices(
    requested: str | Sequence[str], band_names: Sequence[str] = S1_BAND_NAMES
) -> tuple[str, ...]:
    """Radar series names computable from ``band_names`` (case-insensitive).

    Items: a name of :data:`RADAR_INDEX_NAMES`, or ``"auto"`` for every one the channels
    allow (VV alone gives ``vv``; VV and VH give all five). A plain string is one item;
    duplicates are dropped, the first occurrence kept.

    Raises:
      ValueError: an unknown name, a series whose channels are missing (naming them), or
        nothing to compute.
    """
    have = set(check_radar_band_names(band_names))
    items = (requested,) if isinstance(requested, str) else tuple(requested)
    resolved: list[str] = []
    for item in (str(item).strip().lower() for item in items):
        if item == "auto":
            resolved += [
                name
                for name, needs in _RADAR_INDEX_BANDS.items()
                if all(band in have for band in needs)
            ]
        elif item in _RADAR_INDEX_BANDS:
            missing = [band for band in _RADAR_INDEX_BANDS[item] if band not in have]
            if missing:
                raise ValueError(
                    f"radar series {item!r} needs channels {missing}, not in {tuple(band_names)}"
                )
            resolved.append(item)
        else:
            raise ValueError(f"unknown radar series {item!r}; known: {RADAR_INDEX_NAMES}, 'auto'")
    resolved = list(dict.fromkeys(resolved))
    if not resolved:
        raise ValueError(f"radar series {items} name nothing to compute from {tuple(band_names)}")
    return tuple(resolved)


def radar_indices(
    s1: jnp.ndarray,
    names: str | Sequence[str] = RADAR_INDEX_NAMES,
    *,
    band_names: Sequence[str] = S1_BAND_NAMES,
    db: bool = True,
    nodata: float | None = None,
    return_mask: bool = False,
) -> jnp.ndarray | tuple[jnp.ndarray, jnp.ndarray]:
    """Radar series from Sentinel-1 VV and VH backscatter, chosen by name.

    With σVV and σVH the backscatter coefficients in linear power (``σ = 10^(dB / 10)``):

    - ``vv``          VV in dB, ``10·log10(σVV)``;
    - ``vh``          VH in dB;
    - ``ratio``       VV/VH in dB, ``VV_dB − VH_dB`` (PASTIS-R's third channel);
    - ``cross_ratio`` σVH / σVV, linear (the cross ratio; typically 0.01..0.5);
    - ``rvi``         dual-pol radar vegetation index ``4·σVH / (σVV + σVH)``, linear
      (0 for bare soil, rising with vegetation; below 4).

    Only the ``VV`` and ``VH`` channels are read; a ``VV/VH`` channel is ignored (it is
    recomputed, so all outputs agree).

    Args:
      s1: ``(..., C)`` array, channels on the last axis named by ``band_names``; cast to
        float32.
      names: series of :data:`RADAR_INDEX_NAMES` in output order, or ``"auto"``
        (:func:`resolve_radar_indices`).
      band_names: the ``C`` channel names (:data:`S1_BAND_NAMES` by default).
      db: ``s1`` holds dB (``True``, as PASTIS-R and every :class:`Patch`) or linear power.
      nodata: raw value marking missing data; NaN and ±inf are always missing, and so is a
        backscatter outside :data:`PLAUSIBLE_BACKSCATTER_DB` (a linear value ≤ 0).
      return_mask: also return the validity mask.

    Returns:
      ``values``: ``(..., K)`` float32, ``K`` the number of series; a series is exactly
      ``0.0`` where a channel it reads is missing. If ``return_mask``: ``(values, valid)``
      with ``valid`` ``(...,)`` bool, True where all ``K`` series are valid. Values and
      gradients are finite for every input (``|dB| ≤ 80``, cross ratio within 1e±8).

    Raises:
      ValueError: unknown series, a channel it needs missing, ``len(band_names)`` not
        matching ``s1.shape[-1]``, or a non-numeric ``s1``.
    """
    check_numeric(s1, "s1")
    channels = check_radar_band_names(band_names)
    requested = resolve_radar_indices(names, channels)
    s1 = jnp.asarray(s1, dtype=jnp.float32)
    if s1.ndim < 1 or s1.shape[-1] != len(channels):
        raise ValueError(
            f"s1 of shape {s1.shape} must have {len(channels)} channels on its last axis, "
            f"one per band name {channels}"
        )
    low, high = PLAUSIBLE_BACKSCATTER_DB

    def read(name: str) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
        """(dB, linear power, ok) of channel ``name``; 0 dB / 1 where not ok."""
        raw = s1[..., channels.index(name)]
        ok = jnp.isfinite(raw)
        if nodata is not None:
            ok = ok & (raw != nodata)
        if db:
            value_db = jnp.where(ok, raw, 0.0)
        else:
            positive = ok & (raw > 0.0)
            value_db = 10.0 * jnp.log10(jnp.where(positive, raw, 1.0))
            ok = positive
        ok = ok & (value_db >= low) & (value_db <= high)
        value_db = jnp.where(ok, value_db, 0.0)
        return value_db, jnp.power(10.0, value_db / 10.0), ok

    vv = read("VV") if "VV" in channels else None
    vh = read("VH") if "VH" in channels else None
    outputs, mask = [], None
    for name in requested:
        if name == "vv":
            value, ok = vv[0], vv[2]
        elif name == "vh":
            value, ok = vh[0], vh[2]
        else:
            ok = vv[2] & vh[2]
            if name == "ratio":
                value = vv[0] - vh[0]
            elif name == "cross_ratio":
                value = jnp.power(10.0, (vh[0] - vv[0]) / 10.0)
            else:  # rvi; the denominator is at least 2·10^(low/10) > 0
                value = 4.0 * vh[1] / (vv[1] + vh[1])
        outputs.append(jnp.where(ok, value, 0.0))
        mask = ok if mask is None else mask & ok
    values = jnp.stack(outputs, axis=-1).astype(jnp.float32)
    if return_mask:
        return values, mask
    return values
