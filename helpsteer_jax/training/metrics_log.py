"""Console progress (ETA, loss, accuracy, tokens/s, MFU) and TensorBoard events in the workdir."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from etils import epath

from helpsteer_jax.models.config import LlamaConfig


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
  """Real (non-padding) tokens per second and MFU between two reads."""

  def __init__(self, cfg: LlamaConfig, *, peak_flops: float, num_devices: int,
               num_labels: int = 1):
    self.cfg, self.peak, self.devices, self.labels = cfg, peak_flops, num_devices, num_labels
    self._t = time.perf_counter()
    self._tokens = self._padded = 0
    self._flops = 0.0

  def add(self, batch: dict[str, np.ndarray]) -> None:
    mask = np.asarray(batch["attention_mask"])
    seq_len = mask.shape[-1]
    real = int(mask.sum())
    self._tokens += real
    self._padded += mask.size
    self._flops += real * train_flops_per_token(self.cfg, seq_len, self.labels)

  def read(self) -> dict[str, float]:
    now = time.perf_counter()
    dt = max(now - self._t, 1e-9)
    out = {"tokens_per_s": self._tokens / dt,
           "padding_share": 1.0 - self._tokens / max(self._padded, 1),
           "model_tflops_per_s": self._flops / dt / 1e12}
    if self.peak:
      out["mfu"] = self._flops / dt / (self.peak * self.devices)
    self._t, self._tokens, self._padded, self._flops = now, 0, 0, 0.0
    return out


class _JsonLines:
  """metrics.jsonl, appended to across resumes, on a local disk or an object store.

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

  def write(self, row: dict[str, Any]) -> None:
    line = json.dumps(row) + "\n"
    if self._file is not None:
      self._file.write(line)
      self._file.flush()
    else:
      self._rows.append(line)
      self._path.write_text("".join(self._rows))

  def close(self) -> None:
    if self._file is not None:
      self._file.close()


class Logger:
  """Metrics to `workdir/metrics.jsonl` and TensorBoard, progress to stderr; a no-op unless
  `enabled` (process 0 of a multi-host run). `workdir` may be a URL (gs://...), see epath."""

  def __init__(self, workdir: str | Path | epath.Path, enabled: bool = True):
    self.enabled = enabled
    self._start = time.perf_counter()
    self._first_step: int | None = None
    self._writer = None
    self._jsonl = None
    if enabled:
      workdir = epath.Path(workdir)
      self._jsonl = _JsonLines(workdir / "metrics.jsonl")
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      # tensorboardX writes gs:// and s3:// itself (google-cloud-storage / boto3).
      self._writer = SummaryWriter(str(workdir / "tensorboard"))

  def text(self, msg: str) -> None:
    if self.enabled:
      print(msg, file=sys.stderr, flush=True)

  def scalars(self, step: int, metrics: dict[str, Any], prefix: str = "") -> None:
    if self._writer is not None:
      for k, v in metrics.items():
        self._writer.add_scalar(prefix + k, float(v), step)
      self._writer.flush()
    if self._jsonl is not None:
      # `time`: the row's wall clock (unix seconds), so step times survive resumes.
      self._jsonl.write({"step": step, "time": round(time.time(), 3),
                         **{prefix + k: float(v) for k, v in metrics.items()}})

  def progress(self, step: int, total: int, m: dict[str, float]) -> None:
    if self._first_step is None:
      self._first_step, self._start = step - 1, time.perf_counter() - 1e-9
    elapsed = time.perf_counter() - self._start
    eta = elapsed / max(step - self._first_step, 1) * (total - step)
    keys = ("loss", "accuracy", "grad_norm", "lr", "tokens_per_s", "mfu")
    parts = [f"{k}={m[k]:.4g}" for k in keys if k in m]
    self.text(f"step {step}/{total} [{elapsed:.0f}s<{eta:.0f}s] " + " ".join(parts))

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
    if self._jsonl is not None:
      self._jsonl.close()
