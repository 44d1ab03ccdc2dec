"""A run's log: throughput and MFU, a tqdm progress bar (ETA, loss, tokens/s, MFU) and metrics to
the writers of metric_writers.py (metrics.jsonl, TensorBoard, W&B)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np
from etils import epath
from tqdm import tqdm

from helpsteer_jax.models.config import LlamaConfig
from helpsteer_jax.training import metric_writers


def train_flops_per_token(cfg: LlamaConfig, seq_len: int, num_labels: int = 1) -> float:
  """Model FLOPs per trained token: 6·N + 12·n_layers·n_heads·head_dim·T (PaLM, app. B).

  N counts the matmul parameters a token passes through (attention and MLP projections and the
  reward head; the embedding lookup is no matmul). The second term is attention's QK^T and AV
  over a context of T, full (not causal-halved) as PaLM counts it; x3 for forward + backward.
  """
  d, h, kv, hd, f = (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                     cfg.head_dim, cfg.intermediate_size)
  per_layer = d * h * hd * 2 + d * kv * hd * 2 + 3 * d * f
  n = cfg.num_hidden_layers * per_layer + d * num_labels
  return 6.0 * n + 12.0 * cfg.num_hidden_layers * h * hd * seq_len


class Throughput:
  """Real (non-padding) tokens per second and MFU between two reads, and over the whole run.

  `num_labels`: the width of the model's last matmul (1 for a BT head, the vocabulary for a
  causal LM, whose head is the largest single matmul of a small model); `extra_forwards`: forward
  passes per token besides the trained one (DPO's reference log-probs: 1).
  """

  def __init__(self, cfg: LlamaConfig, *, peak_flops: float, num_devices: int,
               num_labels: int = 1, extra_forwards: int = 0):
    self.cfg, self.peak, self.devices, self.labels = cfg, peak_flops, num_devices, num_labels
    self._scale = 1.0 + extra_forwards / 3.0  # a forward is a third of forward + backward
    self._start = self._t = time.perf_counter()
    self._since_read = np.zeros(3)  # real tokens, padded tokens, model FLOPs
    self._all = np.zeros(3)

  def add(self, batch: dict[str, np.ndarray]) -> None:
    mask = np.asarray(batch["attention_mask"])
    real = int(mask.sum())
    counts = np.asarray([real, mask.size,
                         real * train_flops_per_token(self.cfg, mask.shape[-1], self.labels)
                         * self._scale])
    self._since_read += counts
    self._all += counts

  def _rates(self, counts: np.ndarray, seconds: float) -> dict[str, float]:
    tokens, padded, flops = counts
    dt = max(seconds, 1e-9)
    out = {"tokens_per_s": tokens / dt,
           "padding_share": 1.0 - tokens / padded if padded else float("nan"),
           "model_tflops_per_s": flops / dt / 1e12}
    if self.peak:
      out["mfu"] = flops / dt / (self.peak * self.devices)
    return out

  def read(self) -> dict[str, float]:
    """Since the previous read (or the start), then starts a new interval."""
    now = time.perf_counter()
    out = self._rates(self._since_read, now - self._t)
    self._t, self._since_read = now, np.zeros(3)
    return out

  def total(self) -> dict[str, float]:
    """Over everything added since the meter was made, by the wall time since then (so the
    loop's compilation, evaluations and checkpoints are in it); reads do not reset it."""
    seconds = time.perf_counter() - self._start
    return {**self._rates(self._all, seconds), "seconds": seconds}


class _LinePerRefresh:
  """A bar's stream when stderr is no terminal (a log file): each refresh becomes one line,
  where tqdm would pile carriage-return redraws onto one."""

  def __init__(self, stream: TextIO):
    self._stream = stream

  def write(self, s: str) -> None:
    s = s.replace("\r", "").rstrip()
    if s:
      self._stream.write(s + "\n")

  def __getattr__(self, name: str) -> Any:  # flush, encoding, ...
    return getattr(self._stream, name)


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None,
                 initial: int = 0, desc: str = "", unit: str = "step", enabled: bool = True,
                 stream: TextIO | None = None) -> tqdm:
  """A tqdm bar (rate and ETA) on `stream` (stderr); in a log file a line every 30 s."""
  stream = stream or sys.stderr
  try:  # a terminal of width 0 (a pty nobody sized) would show an empty bar
    tty = stream.isatty() and os.get_terminal_size(stream.fileno()).columns > 0
  except (AttributeError, OSError, ValueError):
    tty = False
  return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit,
              disable=not enabled, file=stream if tty else _LinePerRefresh(stream),
              mininterval=0.5 if tty else 30.0, miniters=1, dynamic_ncols=tty)


class Logger:
  """Metrics to metrics.jsonl and `trackers` (metric_writers: "tensorboard", "wandb"), messages
  and a progress bar to stderr; a no-op unless `enabled` (process 0 of a multi-host run).
  `workdir` may be a URL (gs://...), see epath. `run_config` (a dict) goes to W&B."""

  def __init__(self, workdir: str | Path | epath.Path, enabled: bool = True,
               trackers: str = "tensorboard", *, run_config: Mapping[str, Any] | None = None,
               progress: bool = True):
    self.enabled, self._progress = enabled, enabled and progress
    self._writers = (metric_writers.open_writers(epath.Path(workdir), trackers, run_config)
                     if enabled else [])
    self._bar: tqdm | None = None
    self._keys: tuple[str, ...] = ()

  def text(self, msg: str) -> None:
    if self.enabled:
      tqdm.write(msg, file=sys.stderr)  # above a bar, which redraws below it

  def scalars(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
    row = {prefix + k: float(v) for k, v in metrics.items()}
    for w in self._writers:
      w.write_scalars(step, row)
      w.flush()

  def start_progress(self, total: int, initial: int, keys: Sequence[str],
                     desc: str = "train") -> None:
    """The loop's bar from step `initial` to `total`; `keys`: the metrics shown beside it."""
    self._keys = tuple(keys)
    self._bar = progress_bar(total=total, initial=initial, desc=desc, enabled=self._progress)

  def progress(self, step: int, metrics: Mapping[str, float] | None = None) -> None:
    """Moves the bar to `step`, showing `metrics`' `keys` when given."""
    if self._bar is None:
      return
    if metrics:
      self._bar.set_postfix_str(" ".join(f"{k}={metrics[k]:.4g}" for k in self._keys
                                         if k in metrics), refresh=False)
    self._bar.update(step - self._bar.n)

  def end_progress(self) -> None:
    """Closes the bar (its last line: the loop's own rate and time, before a final evaluation)."""
    if self._bar is not None:
      self._bar.close()
      self._bar = None

  def close(self, exit_code: int = 0) -> None:
    """Closes the bar and the trackers; `exit_code` non-zero marks a failed run (W&B)."""
    self.end_progress()
    for w in self._writers:
      w.close(exit_code)
