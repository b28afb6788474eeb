"""Compatibility with what older versions wrote: one place for what a missing field meant.

:data:`LEGACY_SPEC_FIELDS` fills the model-spec fields a checkpoint written before they
existed leaves out (:meth:`pimc_jax.spec.ModelSpec.from_dict`); :data:`ADDED_CONFIG_KEYS`
gives the config keys added since runs were written the value their absence meant, so such
a run resumes as unchanged (:func:`pimc_jax.train.check_resume`).
"""

from __future__ import annotations

from typing import Any

# What a checkpoint written before a field existed meant by leaving it out.
LEGACY_SPEC_FIELDS: dict[str, Any] = {
    "rp_channels": ("distance",),
    "rp_span": "valid",
    "views": ("s2_rp", "s2_image"),
    "s1_band_names": (),
    "s1_indices": (),
    "s1_image_bands": (),
    "s1_image_mean": (),
    "s1_image_std": (),
    "s1_multilook": 1,
}

# Keys added after runs were written, with the value that means what their absence meant:
# a saved config without the key resumes under that value as unchanged.
ADDED_CONFIG_KEYS: dict[str, Any] = {
    "data.s1": "none",
    "data.s1_image_bands": ["VV", "VH", "VV/VH"],
    "data.s1_max_gap_days": 6,
    "model.views": list(LEGACY_SPEC_FIELDS["views"]),
    "model.s1_indices": ["auto"],
    "model.rp_span": LEGACY_SPEC_FIELDS["rp_span"],
    "data.scl_invalid_classes": [0, 1, 3, 8, 9, 10],
    "model.rp_encoder.padding": "same",
    "model.image_encoder.padding": "same",
}
