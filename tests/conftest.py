"""Test setup: four forced CPU devices, so data-parallel code runs as on an accelerator host;
shared fixtures."""

import os

# Must happen before JAX initialises its backends.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

jax.config.update(
    "jax_compilation_cache_dir", os.path.join(os.path.dirname(__file__), "..", ".jax_cache")
)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

import pytest  # noqa: E402
from tiny_configs import tiny_model_spec  # noqa: E402

import pimc_jax  # noqa: E402
from pimc_jax import parallel  # noqa: E402
from pimc_jax.models import EncoderSpec  # noqa: E402

# The CPU flags launch.py sets, so in-process runs compile as the command does.
parallel.set_xla_cpu_flags()


@pytest.fixture(scope="session")
def tiny_params() -> pimc_jax.PIMCParams:
    """A tiny random PIMC (one-stage 8-channel towers, 12-d embeddings, 16×16 plots, 8×8
    RGB crops) for tests that embed data."""
    tiny = EncoderSpec(stage_sizes=(1,), widths=(8,), stem_width=8, norm_groups=4)
    spec = tiny_model_spec(tiny, head_hidden_dims=(16,), embedding_dim=12, rp_size=16, crop_size=8)
    return pimc_jax.init_params(spec, 0)
