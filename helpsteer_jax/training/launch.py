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


def run(train: Callable[[Any, str], Any]) -> None:
  """Parses the flags and runs `train(config, workdir)`; a bad input file exits with one line."""
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    try:
      train(_CONFIG.value, _WORKDIR.value)
    except BAD_INPUT as e:  # a bad or missing data file: one line naming it, not a traceback
      sys.exit(error_line(e))

  app.run(main)
