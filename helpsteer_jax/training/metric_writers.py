"""Where a run's metrics go: one small writer protocol, with metrics.jsonl, TensorBoard and W&B.

`train.trackers` ("tensorboard", "wandb", both comma-separated, or "" for none) picks the writers
beside metrics.jsonl, which every run writes because the study drivers and tests read it back.
clu.metric_writers has this shape, but its TensorBoard writer brings TensorFlow with it;
tensorboardX writes the same event files, so three small classes suffice.

W&B is optional (`pip install wandb`; imported only when a run asks for it) and offline-safe:
unless `train.wandb.mode` or $WANDB_MODE says otherwise it runs online only with $WANDB_API_KEY
set, else offline (the run folder lands in `workdir/wandb/`, `wandb sync` uploads it later), so
a run never waits on a login. The run id is kept in `workdir/wandb_run_id`: a resumed training
continues the same W&B run.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any, Callable, Mapping, Protocol

from etils import epath

WANDB_MODES = ("online", "offline", "disabled")


class MetricWriter(Protocol):
  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None: ...

  def flush(self) -> None: ...

  def close(self, exit_code: int = 0) -> None:
    """`exit_code` non-zero: the run failed (trackers that record it, W&B, mark it so)."""


class JsonlWriter:
  """metrics.jsonl: one row per write, `{"step", "time" (unix seconds), **scalars}`, appended to
  across resumes, on a local disk or an object store.

  Object stores (gs://, s3://) cannot append (gcsfs silently overwrites), so there the rows are
  kept and the whole file is rewritten at each flush; it holds one short row per logged step.
  """

  def __init__(self, path: epath.Path):
    self._path = path
    self._rows: list[str] | None = None
    self._file = None
    if "://" in str(path):
      self._rows = path.read_text().splitlines(keepends=True) if path.exists() else []
    else:
      self._file = path.open("a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    # `time`: the row's wall clock, so step times survive resumes.
    line = json.dumps({"step": step, "time": round(time.time(), 3), **scalars}) + "\n"
    if self._file is not None:
      self._file.write(line)
    else:
      self._rows.append(line)

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()
    else:
      self._path.write_text("".join(self._rows))

  def close(self, exit_code: int = 0) -> None:
    del exit_code
    if self._file is not None:
      self._file.close()


class TensorBoardWriter:
  """Event files in `workdir/tensorboard` (tensorboardX writes gs:// and s3:// itself)."""

  def __init__(self, workdir: epath.Path, run_config: Mapping[str, Any]):
    del run_config  # config.json holds it
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._writer = SummaryWriter(str(workdir / "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    for k, v in scalars.items():
      self._writer.add_scalar(k, v, step)

  def flush(self) -> None:
    self._writer.flush()

  def close(self, exit_code: int = 0) -> None:
    del exit_code
    self._writer.close()


def import_wandb() -> Any:
  """The wandb module, or an error that says how to install it."""
  try:
    import wandb  # pylint: disable=g-import-not-at-top  (optional: only runs that ask for it)
  except ImportError as e:
    raise ImportError("train.trackers names wandb, which is not installed: pip install wandb "
                      "(or pip install 'helpsteer_jax[wandb]')") from e
  return wandb


def wandb_mode(mode: str = "") -> str:
  """`mode`, else $WANDB_MODE, else online with $WANDB_API_KEY set and offline without."""
  mode = mode or os.environ.get("WANDB_MODE") or (
      "online" if os.environ.get("WANDB_API_KEY") else "offline")
  if mode not in WANDB_MODES:
    raise ValueError(f"train.wandb.mode={mode!r}: choose one of {WANDB_MODES}")
  return mode


class WandbWriter:
  """A W&B run, resumed by the id in `workdir/wandb_run_id`; settings from `train.wandb`
  (project, entity, name: empty for W&B's defaults, the name defaulting to the workdir's)."""

  def __init__(self, workdir: epath.Path, run_config: Mapping[str, Any]):
    wandb = import_wandb()
    settings = dict(run_config.get("train", {}).get("wandb") or {})
    id_path = workdir / "wandb_run_id"
    run_id = id_path.read_text().strip() if id_path.exists() else uuid.uuid4().hex[:12]
    id_path.write_text(run_id + "\n")
    # The run folder: under $WANDB_DIR, else beside the run's other logs; wandb writes only to
    # a local disk, so a bucket workdir leaves it to wandb's default (./wandb). Read here, not
    # left to wandb, which reads the environment once per process.
    folder = os.environ.get("WANDB_DIR") or ("" if "://" in str(workdir) else str(workdir))
    if folder:
      os.makedirs(folder, exist_ok=True)
    mode = wandb_mode(settings.get("mode", ""))
    self._run = wandb.init(
        project=settings.get("project") or None, entity=settings.get("entity") or None,
        name=settings.get("name") or workdir.name, config=dict(run_config), dir=folder or None,
        # Offline (where wandb ignores `resume`), each session is a folder of its own under the
        # same id, and `wandb sync` uploads them in order into one run.
        id=run_id, resume="allow" if mode == "online" else None, mode=mode)

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._run.log(dict(scalars), step=step)

  def flush(self) -> None:
    pass  # wandb streams each row itself

  def close(self, exit_code: int = 0) -> None:
    self._run.finish(exit_code=exit_code)  # non-zero: the run shows as failed, not finished


# (workdir, the run's config as a dict) -> writer
TRACKERS: dict[str, Callable[[epath.Path, Mapping[str, Any]], MetricWriter]] = {
    "tensorboard": TensorBoardWriter,
    "wandb": WandbWriter,
}


def parse_trackers(spec: str) -> tuple[str, ...]:
  """"tensorboard,wandb" -> ("tensorboard", "wandb"); an unknown name is an error."""
  names = tuple(dict.fromkeys(n.strip() for n in str(spec).split(",") if n.strip()))
  unknown = [n for n in names if n not in TRACKERS]
  if unknown:
    raise ValueError(f"train.trackers={spec!r}: unknown tracker {unknown[0]!r}; choose from "
                     f"{sorted(TRACKERS)}, comma-separated (metrics.jsonl is always written)")
  return names


def open_writers(workdir: epath.Path, trackers: str,
                 run_config: Mapping[str, Any] | None = None) -> list[MetricWriter]:
  """metrics.jsonl and the writers `trackers` names."""
  workdir = epath.Path(workdir)
  return [JsonlWriter(workdir / "metrics.jsonl")] + [
      TRACKERS[name](workdir, run_config or {}) for name in parse_trackers(trackers)]
