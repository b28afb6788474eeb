"""Runs a pimc_jax job: pre-training or one of the evaluations, chosen by the config.

python launch.py --config=configs/pretrain.py [--config.total_steps=50] [--workdir=DIR]
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from pimc_jax import launcher

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Output directory (default: workdirs/<config name>).")
flags.mark_flags_as_required(["config"])


def _unknown_key(error: BaseException, argv: list[str]) -> str | None:
    """The message for an override of a key the config lacks, else None.

    ml_collections reports such a key as a ``KeyError`` (possibly inside an
    ``AttributeError``) whose text is the quoted key, then a "Did you mean" line.
    """
    while error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    lines = str(error.args[0] if error.args else error).splitlines() or [""]
    key = lines[0].strip("'\"")
    overrides = [arg.partition("=")[0] for arg in argv[1:] if arg.startswith("--config.")]
    culprits = [flag for flag in overrides if key in flag.split(".")[1:]]
    if not key or not culprits:
        return None
    hint = " ".join(line.strip() for line in lines[1:])
    return f"flag {culprits[0]}: the config has no key {key!r}. {hint}".strip()


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing; an override of an unknown config key is a usage error too."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        message = _unknown_key(error, argv)
        if message is None:
            raise
        sys.stderr.write(f"FATAL Flags parsing error: {message}\n")
        sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
        sys.exit(1)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    launcher.run(FLAGS.config, FLAGS.workdir, config_path=FLAGS["config"].config_filename)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
