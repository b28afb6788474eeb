# python launch.py --config=configs/classify_map.py --config.init_from=workdirs/pretrain --config.data.path=my_tifs --workdir=workdirs/classify_map  # noqa: E501
"""Class maps from a few labels: a classifier on the embeddings of a patch folder.

Labels come from the patches' labels rasters (``labels.tif`` in a GeoTIFF patch folder,
``labels`` in an ``.npz``; ``classifier.ignore_labels`` mark unlabelled pixels). The
embeddings are computed as ``configs/embed.py`` computes them (into ``WORKDIR/embeddings``,
or read from an ``embed`` workdir with ``embeddings_from``). Extremely randomised trees on
the embeddings and each pixel's raw band series (``classifier.model=forest``: a
RandomForest; ``linear``: a logistic regression on the embeddings) are scored on spatially
held-out blocks (``classifier.block_size``, ``classifier.test_fraction``), then, by default,
refitted on every label. Writes per patch ``ID.classes.tif`` (class codes, colour table,
class names) and ``ID.probabilities.tif`` into ``WORKDIR/maps/``, ``classifier.joblib``
(``.npz`` for the linear model), ``results.json`` / ``results.md`` and ``class_map.png``. With
``classifier_from=OTHER_WORKDIR/classifier.joblib`` the same command maps another folder
without labels. The task is :mod:`pimc_jax.maps.classify`.
"""

import ml_collections

from pimc_jax.maps.config import classify_map_config


def get_config(arg: str = "") -> ml_collections.ConfigDict:
    return classify_map_config(arg)
