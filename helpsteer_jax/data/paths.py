"""Where data files come from: shipped with the package, or the shared real-data folder.

The package ships one file, the HelpSteer v1 sample (CC-BY-4.0; attribution and license in
`assets/README.md`), so the main job and the `:tiny` configs run with nothing outside the
repository. The other real files (RewardBench, HH-RLHF, ...) are read from a folder beside the
repository, `../shared/data`, or from wherever `$HELPSTEER_SHARED_DATA` points.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

SHARED_DATA_ENV = "HELPSTEER_SHARED_DATA"
HELPSTEER_SAMPLE = "helpsteer_v1_sample.jsonl"


def packaged(name: str) -> str:
  """Path of a data file shipped inside the package (helpsteer_jax/data/assets)."""
  path = importlib.resources.files("helpsteer_jax.data") / "assets" / name
  if not path.is_file():
    raise FileNotFoundError(f"{name} is not shipped with helpsteer_jax (looked in {path})")
  return str(path)


def shared_data_dir() -> str:
  """`$HELPSTEER_SHARED_DATA`, else `shared/data` beside the repository of this checkout."""
  env = os.environ.get(SHARED_DATA_ENV)
  if env:
    return env
  return str(Path(__file__).resolve().parents[2].parent / "shared" / "data")


def missing_file_message(path: str, key: str) -> str:
  """The error for a data path that is not there: the file, the config key that named it, and
  how that default came about."""
  msg = f"{path}: no such file (set by the config key {key}; override it with --config.{key}=PATH"
  shared = Path(shared_data_dir())
  try:
    under_shared = Path(path).resolve().is_relative_to(shared.resolve())
  except OSError:
    under_shared = False
  if under_shared:
    origin = (f"${SHARED_DATA_ENV}={os.environ[SHARED_DATA_ENV]}" if os.environ.get(SHARED_DATA_ENV)
              else f"the default {shared}, used when ${SHARED_DATA_ENV} is unset")
    msg += f", or point ${SHARED_DATA_ENV} at the folder that holds it; the folder came from {origin}"
  return msg + ")"
