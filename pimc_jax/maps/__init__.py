"""Maps: embedding and class-map rasters of whole patch folders, from the command line.

=================  =====================  ================================================
``config.task``    module                 what it writes into the workdir
=================  =====================  ================================================
``embed``          :mod:`.embed`          per patch: an embeddings COG, a valid-mask COG,
                                          a PCA preview PNG
``classify_map``   :mod:`.classify`       the embeddings (as ``embed``), a class-map COG and
                                          a per-class probability COG per patch, a saved
                                          classifier, ``results.json`` / ``results.md``
=================  =====================  ================================================

Shared modules: :mod:`.config` (the ``maps`` config block), :mod:`.cog` (Cloud-Optimized
GeoTIFFs written under a temporary name and renamed when complete), :mod:`.preview` (PNG
previews and the class-map figure). This package is imported lazily by the launcher: it
pulls in the inference API (:mod:`pimc_jax.encode`).
"""

from __future__ import annotations

from typing import Any

import ml_collections

MAP_TASKS: tuple[str, ...] = ("embed", "classify_map")


def run_map_task(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs the map task ``config.task`` names (:data:`MAP_TASKS`) into ``workdir``."""
    if config.task == "embed":
        from pimc_jax.maps.embed import run_embed

        return run_embed(config, workdir)
    if config.task == "classify_map":
        from pimc_jax.maps.classify import run_classify_map

        return run_classify_map(config, workdir)
    raise ValueError(f"config.task must be one of {MAP_TASKS}, got {config.task!r}")


__all__ = ["MAP_TASKS", "run_map_task"]
