"""Class-name tables of the labelled data sets, in label order.

The names live here, apart from the readers, so that anything that only needs a class
name (the synthetic generator, result tables) does not import a TFDS builder: PASTIS's
crop types (:mod:`pimc_jax.data.pastis`), EuroSAT's land covers
(:mod:`pimc_jax.data.eurosat`, and the synthetic EuroSAT stand-in) and the synthetic
PASTIS-like classes (:mod:`pimc_jax.data.synthetic`).
"""

from __future__ import annotations

#: PASTIS semantic classes 0..19: background 0, 18 crop types, void 19.
PASTIS_CLASS_NAMES: tuple[str, ...] = (
    "Background",
    "Meadow",
    "Soft winter wheat",
    "Corn",
    "Winter barley",
    "Winter rapeseed",
    "Spring barley",
    "Sunflower",
    "Grapevine",
    "Beet",
    "Winter triticale",
    "Winter durum wheat",
    "Fruits, vegetables, flowers",
    "Potatoes",
    "Leguminous fodder",
    "Soybeans",
    "Orchard",
    "Mixed cereal",
    "Sorghum",
    "Void label",
)

#: EuroSAT land-cover classes 0..9 (also the folder names in its archives).
EUROSAT_CLASS_NAMES: tuple[str, ...] = (
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
)

#: Classes 0..7 of the synthetic PASTIS-like patches, one phenology each; 0 is background.
SYNTHETIC_CLASS_NAMES: tuple[str, ...] = (
    "background",
    "wheat",
    "maize",
    "rapeseed",
    "sunflower",
    "grassland",
    "fallow",
    "soybean",
)
