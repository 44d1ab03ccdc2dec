"""The GPU suite's one results file: JSON written part by part, and a Markdown table beside it.

Each part of the suite (benchmarks/gpu/suite.py) runs in its own process and merges its entry
into `$OUT/gpu_results.json` as soon as it has something (atomically, so a part killed by its
time limit leaves the file whole); `gpu_results.md` is rendered again after every write. This
module imports no JAX, so run.sh can record a part that crashed or hung even when JAX or the
package cannot be imported:

  python benchmarks/gpu/results.py --out DIR --mark train --status timeout --rc 124 --log FILE
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

JSON_NAME = "gpu_results.json"
MD_NAME = "gpu_results.md"
PARTS = ("peak", "attention", "train", "score", "tests")


def load(out: str | Path) -> dict[str, Any]:
  path = Path(out) / JSON_NAME
  if path.exists():
    try:
      return json.loads(path.read_text())
    except ValueError:  # a torn file cannot happen (atomic writes), but never lose the run for it
      pass
  return {"parts": {}}


def save_part(out: str | Path, part: str, data: dict[str, Any],
              suite: dict[str, Any] | None = None) -> None:
  """Merges `data` as the entry of `part` (and `suite` into the header), then re-renders."""
  results = load(out)
  results.setdefault("parts", {})[part] = dict(data, updated=time.strftime("%H:%M:%S"))
  if suite:
    results.setdefault("suite", {}).update(suite)
  write(out, results)


def write(out: str | Path, results: dict[str, Any]) -> None:
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  for name, text in ((JSON_NAME, json.dumps(results, indent=1, sort_keys=True)),
                     (MD_NAME, render_md(results))):
    tmp = out / (name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, out / name)


def _f(x: Any, fmt: str, scale: float = 1.0) -> str:
  return "-" if x is None else format(x * scale, fmt)


def _model_row(name: str, r: dict[str, Any]) -> str:
  what = r.get("shape", "")
  return (f"| {name} | {what} | {r.get('attention_impl', '-')} | {_f(r.get('step_s'), '.4f')} | "
          f"{_f(r.get('tokens_per_s'), ',.0f')} | {_f(r.get('model_tflops'), '.4g')} | "
          f"{_f(r.get('mfu_spec'), '.1%')} | {_f(r.get('mfu_measured'), '.1%')} | "
          f"{_f(r.get('compile_s'), '.1f')} | {_f(r.get('peak_memory_gib'), '.1f')} | "
          f"{r.get('status', '-')} |")


def render_md(results: dict[str, Any]) -> str:
  """A short human-readable report of whatever parts have finished so far."""
  suite, parts = results.get("suite", {}), results.get("parts", {})
  peak = parts.get("peak", {})
  env = peak.get("env", {})
  lines = ["# GPU suite results", ""]
  if suite.get("dry_run"):
    lines += ["**Dry run** (CPU, tiny model, XLA attention): numbers exercise the code paths and "
              "mean nothing.", ""]
  lines += [f"- device: {env.get('device_kind', '?')} ({env.get('platform', '?')}), "
            f"jax {env.get('jax', '?')}, jaxlib {env.get('jaxlib', '?')}, "
            f"flax {env.get('flax', '?')}, optax {env.get('optax', '?')}",
            f"- spec peak: {env.get('spec_peak_name') or 'none for this device'}"
            + (f" = {env['spec_peak_flops'] / 1e12:.0f} TFLOP/s" if env.get("spec_peak_flops")
               else ""),
            f"- measured matmul peak: {_f(peak.get('matmul_tflops'), '.4g')} TFLOP/s "
            f"({peak.get('matmul', '?')}, best of {peak.get('repeats', '?')})",
            f"- suite flags: `{suite.get('argv') or '(defaults)'}`", ""]
  lines += ["| part | shape | attention | step s | tokens/s | model TFLOP/s | MFU (spec) | "
            "MFU (measured) | compile s | peak GiB | status |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
  for name in ("train", "score"):
    if name in parts:
      lines.append(_model_row(name, parts[name]))
  lines.append("")
  for name in ("train", "score"):
    if parts.get(name, {}).get("cudnn_error"):
      lines += [f"{name}: cuDNN attention failed, measured with the default attention:", "```",
                parts[name]["cudnn_error"][-1500:], "```", ""]
  att = parts.get("attention")
  if att:
    lines.append(f"Attention check (status {att.get('status')}): --attention auto uses "
                 f"**{att.get('use_impl', '?')}** ({att.get('reason', '')})")
    for impl, c in att.get("checks", {}).items():
      lines.append(f"- {impl}: " + (f"max error {c['max_rel_err']:.2e} of the largest value, "
                                    f"ok={c['ok']}" if "max_rel_err" in c
                                    else f"error: {c.get('error', '?')[:300]}"))
    for impl, t in att.get("timings_ms", {}).items():
      lines.append(f"- fwd+bwd {att.get('timing_shape', '')} {impl}: {t:.2f} ms")
    lines.append("")
  tests = parts.get("tests")
  if tests:
    c = tests.get("counts", {})
    lines.append(f"Tests on {tests.get('platform', '?')} ({tests.get('status')}, "
                 f"{_f(tests.get('wall_s'), '.0f')} s, matmul precision "
                 f"{tests.get('matmul_precision', 'default')}): " +
                 ", ".join(f"{k} {v}" for k, v in c.items()))
    for f in tests.get("failures", [])[:20]:
      lines.append(f"- {f}")
    lines.append("")
  bad = {k: v for k, v in parts.items() if v.get("status") not in ("ok", None)}
  for name, r in bad.items():
    lines.append(f"Part {name}: {r.get('status')}" + (f" (rc {r['rc']})" if "rc" in r else "")
                 + (f", while: {r['phase']}" if r.get("phase") else ""))
    if r.get("error") or r.get("log_tail"):
      lines += ["```", (r.get("error") or r.get("log_tail", ""))[-1500:], "```"]
  return "\n".join(lines)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--out", required=True)
  ap.add_argument("--mark", required=True, help="the part to record")
  ap.add_argument("--status", required=True, help="timeout, failed, skipped, ...")
  ap.add_argument("--rc", type=int, default=None)
  ap.add_argument("--log", default="", help="the part's log; its tail goes into the entry")
  ap.add_argument("--note", default="")
  args = ap.parse_args()
  prev = load(args.out).get("parts", {}).get(args.mark, {})
  entry = dict(prev, status=args.status)  # keep what the part saved before it died
  if args.rc is not None:
    entry["rc"] = args.rc
  if args.note:
    entry["note"] = args.note
  if args.log and os.path.exists(args.log):
    entry["log_tail"] = Path(args.log).read_text(errors="replace")[-3000:]
  save_part(args.out, args.mark, entry)


if __name__ == "__main__":
  main()
