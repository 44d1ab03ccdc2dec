"""The trainers' command line: `--config FILE:ARG [--config.key=value ...] --workdir DIR`.

absl with ml_collections' config_flags: the config file's `get_config(ARG)` builds a locked
ConfigDict (a mistyped override is an error) that `--config.key=value` overrides. absl keeps
flags in one process-wide registry, so the two flags are defined here, once, at import, and
each trainer's console script is `launch.run(train)`. The argument-driven tools (score,
evaluate, export, expo) use argparse instead; see ARCHITECTURE.md.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from helpsteer_jax.data.records import BAD_INPUT, error_line

_CONFIG = config_flags.DEFINE_config_file("config", None, "experiment config file[:arg]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "where checkpoints, logs and results go")


def load_config(spec: str | os.PathLike) -> ml_collections.ConfigDict:
  """`FILE[:ARG]` as `--config` reads it, for Python launchers and notebooks: the file's
  `get_config(ARG)` (or `get_config()` without ARG), unlocked so that fields can be set.

    c = load_config("experiments/scaled_bt.py:smollm2"); c.train.steps = 3; train(c, "w")
  """
  path = str(spec).partition(":")[0]
  if not os.path.isfile(path):  # the flag's parser defers this error to the first field read
    raise FileNotFoundError(f"config file {path!r} (from {str(spec)!r}) does not exist")
  return config_flags.config_flags.ConfigFileFlagParser("config", lock_config=False).parse(str(spec))


def use_compilation_cache() -> str | None:
  """Turns on jax's persistent compilation cache for a command-line run, so that launching the
  same config again skips XLA's compiles; returns the folder (None: off).

  The folder is jax's own setting when one is made (`$JAX_COMPILATION_CACHE_DIR` or
  `jax.config`), else `$HELPSTEER_JAX_XLA_CACHE`, else ~/.cache/helpsteer_jax/xla;
  `HELPSTEER_JAX_XLA_CACHE=off` leaves it off. Entries are keyed by the program, the flags and
  the jax/jaxlib versions, so a stale one is never used. Python launchers keep jax's default
  (off) unless they call this or set the jax option themselves.
  """
  import jax  # pylint: disable=g-import-not-at-top
  if jax.config.jax_compilation_cache_dir:
    return jax.config.jax_compilation_cache_dir
  folder = os.environ.get("HELPSTEER_JAX_XLA_CACHE", "") or os.path.join(
      os.path.expanduser("~"), ".cache", "helpsteer_jax", "xla")
  if folder.lower() in ("off", "0", "none"):
    return None
  jax.config.update("jax_compilation_cache_dir", folder)
  return folder


def run(train: Callable[[Any, str], Any]) -> None:
  """Parses the flags and runs `train(config, workdir)` with the compilation cache on
  (`use_compilation_cache`); a bad input file exits with one line."""
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    use_compilation_cache()
    try:
      train(_CONFIG.value, _WORKDIR.value)
    except BAD_INPUT as e:  # a bad or missing data file: one line naming it, not a traceback
      sys.exit(error_line(e))

  app.run(main)
