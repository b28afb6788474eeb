"""Runs a pimc_jax job: pre-training or one of the evaluations, chosen by the config.

python launch.py --config=configs/pretrain.py [--config.total_steps=50] [--workdir=DIR]

A user error (bad config value, missing file, refused resume) prints one ``FATAL: ...`` line
to stderr and exits 1; ``--verbosity=1`` shows its traceback.
"""

from absl import app, flags
from ml_collections import config_flags

from pimc_jax import launcher, parallel

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<config name>).")
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    launcher.run_cli(
        FLAGS.config,
        FLAGS.workdir,
        config_path=FLAGS["config"].config_filename,
        verbosity=FLAGS.verbosity,
    )


if __name__ == "__main__":
    parallel.set_xla_cpu_flags()  # before JAX starts its backends
    app.run(main, flags_parser=launcher.parse_flags)
