"""pimc_jax: PIMC pixel-wise multimodal contrastive self-supervision in JAX/Flax.

The package reads in pipeline order, and no module imports one further down:
:mod:`~pimc_jax.indices` (vegetation indices) → :mod:`~pimc_jax.recurrence`
(recurrence plots) → :mod:`~pimc_jax.models` (the two towers) →
:mod:`~pimc_jax.preprocessing` (model inputs from raw views) → :mod:`~pimc_jax.loss`
(symmetric InfoNCE) → :mod:`~pimc_jax.optim` (optimizer and schedule) →
:mod:`~pimc_jax.step` (one training step) → :mod:`~pimc_jax.train` (the loop,
checkpoints, metrics). :mod:`~pimc_jax.data` (sources, pair sampling; its modules are
listed there) and :mod:`~pimc_jax.evaluation` (the downstream tasks and what they share)
sit beside it, :mod:`~pimc_jax.parallel` is the one place devices and hosts are handled,
and :mod:`~pimc_jax.encode` is the entry point for embedding data from other programs: a
leaf that nothing in the package imports but :mod:`~pimc_jax.plot`, the figure command
(``python -m pimc_jax.plot KIND --workdir=DIR``), itself a leaf over the figure library
:mod:`~pimc_jax.figures`.

Importing the package changes no environment variable. ``launch.py`` and the ``bench/``
scripts call :func:`pimc_jax.parallel.set_xla_cpu_flags` before JAX starts (faster
convolutions on CPU); another program may call it first thing too.
"""

from pimc_jax.checkpoint import load_params
from pimc_jax.encode import encode, encode_patch
from pimc_jax.indices import BAND_TABLES, vegetation_indices
from pimc_jax.loss import symmetric_infonce
from pimc_jax.models import EncoderSpec, ModelSpec, PIMCParams, init_params
from pimc_jax.recurrence import index_recurrence_plots, recurrence_plot, resample_series

__all__ = [
    "BAND_TABLES",
    "EncoderSpec",
    "ModelSpec",
    "PIMCParams",
    "encode",
    "encode_patch",
    "index_recurrence_plots",
    "init_params",
    "load_params",
    "recurrence_plot",
    "resample_series",
    "symmetric_infonce",
    "vegetation_indices",
]

__version__ = "0.1.0"
