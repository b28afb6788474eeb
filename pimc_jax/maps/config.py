"""The config blocks of the map tasks (``configs/embed.py``, ``configs/classify_map.py``).

Both start from the library's data and model blocks (:mod:`pimc_jax.defaults`) with
``data.name="patches"`` (a folder of your patches, ``data.path``) and add a ``maps`` block:
how embeddings are computed and stored. ``classify_map`` adds the classifier's keys.
"""

from __future__ import annotations

import ml_collections

from pimc_jax import defaults

# Storage of the embedding bands: float32, float16 (IEEE half floats in the file), or
# int8 (round(127·x), which a band scale of 1/127 turns back into the unit-norm values).
EMBED_DTYPES: tuple[str, ...] = ("float32", "float16", "int8")


def maps_block(arg: str = "") -> ml_collections.ConfigDict:
    """The ``maps`` block: which towers, how they are computed, how rasters are stored."""
    maps = ml_collections.ConfigDict()
    # Towers whose embeddings are written, concatenated in this order: rp (tower 1) and/or
    # image (tower 2), named by tower whatever view they read (pimc_jax.encode).
    maps.towers = ("rp", "image")
    maps.dtype = "float32"  # EMBED_DTYPES
    maps.mode = "exact"  # encode_patch's image-view mode: exact | fast
    # Rasters are embedded window by window (window_size × window_size pixels, read with a
    # halo of the towers' crop radius), each window saved before the next, so that a
    # killed run resumes at its first unfinished window.
    maps.window_size = 512
    maps.chunk_pixels = 16384  # pixels encode_patch holds at once inside a window
    maps.block_size = 256  # COG tile size (smaller rasters get smaller tiles)
    maps.preview = True  # a PCA preview PNG per patch
    maps.preview_max_size = 1024  # the preview's longer side, at most
    if "tiny" in defaults.parse_variants(arg):
        maps.window_size = 8
    return maps


def embed_config(arg: str = "") -> ml_collections.ConfigDict:
    """What ``configs/embed.py`` runs."""
    config = ml_collections.ConfigDict()
    config.task = "embed"
    # A pre-training workdir, a checkpoints/<step> directory, or "random" (fresh towers
    # built from the model block, e.g. to test the pipeline).
    config.init_from = ""
    config.seed = 0
    config.data = defaults.data_config(arg)
    config.data.name = "patches"
    config.model = defaults.model_config(arg)  # used by init_from=random only
    config.maps = maps_block(arg)
    return config


def classify_map_config(arg: str = "") -> ml_collections.ConfigDict:
    """What ``configs/classify_map.py`` runs: ``embed``'s keys plus the classifier's."""
    config = embed_config(arg)
    config.task = "classify_map"
    # Embeddings already written by `embed` with the same init_from (a workdir); empty:
    # computed here, into WORKDIR/embeddings (resumable like embed).
    config.embeddings_from = ""
    # A classifier.joblib / .npz written by an earlier classify_map run: map this folder with it
    # (no labels needed, no training).
    config.classifier_from = ""
    classifier = ml_collections.ConfigDict()
    classifier.ignore_labels = (0,)  # label values that mean "unlabelled"
    classifier.max_pixels_per_class = 20000  # labelled pixels used per class, at most
    # "extra_trees": extremely randomised trees on the embeddings (and, with series, each
    # pixel's raw band series beside them), the best few-label recipe measured
    # (docs/maps.md); "forest": a RandomForest on the same; "linear": a logistic
    # regression on the embeddings alone.
    classifier.model = "extra_trees"
    classifier.trees = 300
    # trees: each pixel's raw band series beside the embeddings (positions must mean the
    # same in every patch): "true", "false", or "auto" (when all patches hold as many
    # dates and bands).
    classifier.series = "auto"
    classifier.l2 = 1.0  # linear: inverse regularisation strength C
    classifier.max_iter = 1000  # linear
    # Held-out validation: square blocks of block_size × block_size pixels; a seeded
    # test_fraction of the labelled blocks is held out (spatially blocked split).
    classifier.block_size = 32
    classifier.test_fraction = 0.3
    classifier.seed = 0
    classifier.refit_all = True  # map with a classifier refitted on every labelled pixel
    classifier.class_names = ()  # "code:name" entries; else DATA/classes.json, else codes
    if "tiny" in defaults.parse_variants(arg):
        classifier.block_size = 4
    config.classifier = classifier
    return config
