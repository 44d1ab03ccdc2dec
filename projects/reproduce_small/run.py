"""The paper's matched-data comparison (BT family vs SteerLM regression, and the recipe that
combines them), reproduced small on this CPU with the packaged SmolLM2-135M-Instruct and
../shared/data.

  python -m projects.reproduce_small.run                 # the whole study, resumable
  python -m projects.reproduce_small.run --stage report  # only regenerate REPORT.md

(from the repository root). The SmolLM2 backbone is frozen; every reward model is the backbone
plus a trained linear `score` head on the final hidden state at the last token. The backbone runs
once per distinct sequence (features.py caches h_last); heads train in seconds (probe.py), so
every variant gets several seeds. A trained head exported with the backbone is an ordinary reward
model; the `export` stage checks that the library's evaluator's rewards for it equal the
cached-feature rewards. What runs is config.py; the report is report.py.

Everything goes to --workdir (features, heads, the export); the result files the report reads are
written to results/ beside this file, and the report to REPORT.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from helpsteer_jax import runs
from helpsteer_jax.data.records import ATTRIBUTES
from helpsteer_jax.evaluation import metrics, rewardbench
from helpsteer_jax.evaluation.pair_eval import EvalConfig, evaluate
from helpsteer_jax.expo import extrapolate
from helpsteer_jax.export import export_hf
from helpsteer_jax.models import Pretrained, convert
from helpsteer_jax.training.configs import SHARED_DATA
from projects.reproduce_small import probe, report
from projects.reproduce_small.config import (EXPO, EXPORT_CHECK, PROBE, RESULTS, STUDY, VARIANTS,
                                             WORKDIR)
from projects.reproduce_small.data import PairSet, RatingSet, build_data
from projects.reproduce_small.features import FeatureCache, scorer_for


# ----------------------------------------------------------------------------- stages


def stage_features(data: dict[str, Any], workdir: Path, pre: Pretrained, batch_size: int,
                   log=print) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Features of every group (computing missing chunks) and the extraction figures."""
  score = scorer_for(pre, batch_size=batch_size)
  feats, figures = {}, {}
  for name, group in data["groups"].items():
    tokens = sum(len(s) for s in group.sequences)
    cache = FeatureCache(workdir / "features" / name, score)
    feats[name] = cache(group.sequences, log=log)
    seconds = cache.seconds()
    figures[name] = {"sequences": len(group.sequences), "tokens": tokens,
                     "seconds": round(seconds, 1), "tokens_per_second": round(tokens / seconds, 1)}
    log(f"features {name}: {feats[name].shape} ({tokens} tokens, {seconds:.0f} s)")
  return feats, figures


def write_budget(data: dict[str, Any], figures: dict[str, Any], results: Path) -> None:
  """Data sizes, CPU time and the per-source reports, for the report."""
  sizes = {}
  for key, val in data.items():
    if isinstance(val, PairSet):
      sizes[key] = int(len(val.chosen))
    elif isinstance(val, RatingSet):
      sizes[key] = int(len(val.index))
  for name, g in data["groups"].items():
    sizes[f"{name} distinct sequences"] = f"{len(g.sequences)} ({figures[name]['tokens']} tokens)"
  train = sum(json.loads(p.read_text()).get("seconds", 0.0) for p in results.glob("*_seed*.json"))
  feat = sum(f["seconds"] for f in figures.values())
  timings = {f"backbone features, {k}": f"{v['seconds']:.0f} s ({v['tokens_per_second']:.0f} "
                                         "tokens/s, includes compilation)"
             for k, v in figures.items()}
  timings["head training, all variants and seeds"] = f"{train:.0f} s"
  timings["total (wall clock on 2 cores)"] = f"{(feat + train) / 60:.1f} min"
  (results / "budget.json").write_text(_to_json(
      {"sizes": sizes, "timings": timings, "reports": data["reports"],
       "rb_pair_subsets": list(data["rb_pairs"].source)}))


def _to_json(obj: Any) -> str:
  """JSON text of a result; numpy scalars and arrays become Python numbers and lists."""
  def default(o):
    if isinstance(o, (np.generic, np.ndarray)):
      return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
  return json.dumps(obj, indent=1, default=default) + "\n"


def _study_key() -> dict[str, Any]:
  return {"study": {k: list(v) if isinstance(v, tuple) else v for k, v in STUDY.items()},
          "probe": PROBE}


class Evaluator:
  """Every metric of one head, from cached features only."""

  def __init__(self, data: dict[str, Any], feats: dict[str, np.ndarray]):
    self.d, self.f = data, feats

  def _acc(self, group: str, ps: PairSet, r: np.ndarray) -> float:
    return float(np.mean(r[ps.chosen] > r[ps.rejected])) if len(ps.chosen) else float("nan")

  def rewards(self, kernel: np.ndarray, group: str) -> np.ndarray:
    return self.f[group] @ np.asarray(kernel, np.float32)[:, 0]

  def quick(self, kernel: np.ndarray) -> dict[str, float]:
    """The per-epoch curve point: held-out accuracies and the RewardBench mean."""
    r_hs, r_mix, r_rb = (self.rewards(kernel, g) for g in ("helpsteer", "mix", "rewardbench"))
    rb = self.d["rb_pairs"]
    s = rewardbench.summarize(rb.source, r_rb[rb.chosen], r_rb[rb.rejected])
    return {"hs_heldout_acc": self._acc("helpsteer", self.d["hs_pairs_validation"], r_hs),
            "mix_heldout_acc": self._acc("mix", self.d["mix_pairs_validation"], r_mix),
            "rb_mean": s["mean_of_present_sections"]}

  def full(self, kernel: np.ndarray) -> dict[str, Any]:
    r_hs, r_mix, r_rb = (self.rewards(kernel, g) for g in ("helpsteer", "mix", "rewardbench"))
    rb, hs_val = self.d["rb_pairs"], self.d["hs_pairs_validation"]
    summary = rewardbench.summarize(rb.source, r_rb[rb.chosen], r_rb[rb.rejected])
    examples = [{"reward_chosen": float(r_rb[c]), "reward_rejected": float(r_rb[r]),
                 "chosen_tokens": int(lc), "rejected_tokens": int(lr),
                 "correct": bool(r_rb[c] > r_rb[r])}
                for c, r, lc, lr in zip(rb.chosen, rb.rejected, rb.chosen_len, rb.rejected_len)]
    scale = float(np.std(r_hs)) or 1.0
    margins = {}
    for m in np.unique(hs_val.strength):
      sel = hs_val.strength == m
      diff = r_hs[hs_val.chosen[sel]] - r_hs[hs_val.rejected[sel]]
      margins[f"{m:g}"] = {"count": int(sel.sum()), "mean_margin": float(diff.mean()),
                           "mean_margin_in_reward_std": float(diff.mean() / scale),
                           "accuracy": float(np.mean(diff > 0))}
    out = {
        "rewardbench": {"sections": summary["sections"],
                        "mean_of_present_sections": summary["mean_of_present_sections"],
                        "subsets": summary["subsets"], "pairs": len(rb.chosen)},
        "hs_heldout_acc": self._acc("helpsteer", hs_val, r_hs),
        # per-pair decisions, for the report's paired bootstrap over evaluation pairs
        "hs_heldout_correct": (r_hs[hs_val.chosen] > r_hs[hs_val.rejected]).astype(int).tolist(),
        "rb_correct": (r_rb[rb.chosen] > r_rb[rb.rejected]).astype(int).tolist(),
        "hs_train_acc": self._acc("helpsteer", self.d["hs_pairs_train"], r_hs),
        "mix_heldout_acc": self._acc("mix", self.d["mix_pairs_validation"], r_mix),
        "mix_train_acc": self._acc("mix", self.d["mix_pairs_train"], r_mix),
        "hs_heldout_margins_by_strength": margins,
        "rb_length_bias": metrics.length_bias(examples),
    }
    mix_val = self.d["mix_pairs_validation"]
    srcs = np.asarray(mix_val.source)
    out["mix_heldout_acc_by_source"] = {
        s: float(np.mean(r_mix[mix_val.chosen[srcs == s]] > r_mix[mix_val.rejected[srcs == s]]))
        for s in sorted(set(mix_val.source))}
    return out


def _train_one(name: str, data_name: str, loss: str, init: str | None, seed: int,
               data: dict[str, Any], feats: dict[str, np.ndarray],
               heads: dict[tuple[str, int], np.ndarray],
               ev: Evaluator) -> tuple[np.ndarray, dict[str, Any]]:
  cfg = probe.ProbeConfig(**PROBE)
  dim = next(iter(feats.values())).shape[1]
  t0 = time.perf_counter()
  if loss == "none":
    trained = probe.Trained(probe.init_kernel(seed, dim, 1), [])
    extra = {}
  elif loss.startswith("regression"):
    rs = data["hs_ratings_train"]
    cols = slice(None) if loss == "regression" else slice(0, 1)  # helpfulness is column 0
    labels, mask = rs.labels[:, cols], rs.label_mask[:, cols]
    kernel = probe.init_kernel(seed, dim, labels.shape[1])
    trained = probe.train_regression(feats["helpsteer"], rs.index, labels, mask, kernel, cfg, seed,
                                     evaluate=ev.quick)
    val = data["hs_ratings_validation"]
    pred = feats["helpsteer"][val.index] @ trained.kernel
    vm = val.label_mask[:, cols]
    mse = ((pred - val.labels[:, cols]) ** 2 * vm).sum(0) / np.maximum(vm.sum(0), 1)
    extra = {"hs_heldout_mse": dict(zip(ATTRIBUTES, map(float, mse)))}
  else:
    group = "helpsteer" if data_name == "hs" else "mix"
    ps = data["hs_pairs_train" if data_name == "hs" else "mix_pairs_train"]
    kernel = (heads[(init, seed)][:, :1].copy() if init else probe.init_kernel(seed, dim, 1))
    trained = probe.train_pairwise(feats[group], ps.chosen, ps.rejected, ps.strength, loss, kernel,
                                   cfg, seed, evaluate=ev.quick)
    extra = {"train_pairs": int(len(ps.chosen))}
  metrics = ev.full(trained.kernel)
  metrics.update(extra)
  return trained.kernel, {"variant": name, "seed": seed, "data": data_name, "loss": loss,
                          "init": init, "metrics": metrics, "curve": trained.curve,
                          "seconds": time.perf_counter() - t0, **_study_key()}


def _expo(seed: int, heads: dict[tuple[str, int], np.ndarray], ev: Evaluator,
          data: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
  init = {"score": {"kernel": heads[(EXPO["init"], seed)][:, :1]}}
  aligned = {"score": {"kernel": heads[(EXPO["aligned"], seed)]}}
  sweep, best = [], None
  for a in EXPO["alphas"]:
    k = extrapolate(init, aligned, a)["score"]["kernel"]
    q = ev.quick(k)
    r = ev.rewards(k, "helpsteer")
    tr = data["hs_pairs_train"]
    q.update(alpha=a, hs_train_acc=float(np.mean(r[tr.chosen] > r[tr.rejected])))
    sweep.append(q)
    if best is None or q["hs_train_acc"] > best[0]["hs_train_acc"]:
      best = (q, k)
  metrics = ev.full(best[1])
  metrics["alpha"] = best[0]["alpha"]
  return best[1], {"variant": EXPO["name"], "seed": seed, "data": "hs", "loss": "expo",
                   "init": f"{EXPO['init']} -> {EXPO['aligned']}", "metrics": metrics,
                   "alpha_sweep": sweep, "curve": [], "seconds": 0.0, **_study_key()}


def stage_train(data: dict[str, Any], feats: dict[str, np.ndarray], workdir: Path,
                results: Path = RESULTS, log=print) -> None:
  """Trains every (variant, seed) not yet in `results` with this study's settings."""
  ev = Evaluator(data, feats)
  results.mkdir(parents=True, exist_ok=True)
  (workdir / "heads").mkdir(parents=True, exist_ok=True)
  heads: dict[tuple[str, int], np.ndarray] = {}
  key = _study_key()
  jobs = [(v, s) for v in VARIANTS for s in STUDY["seeds"]] + \
         [((EXPO["name"], None, None, None), s) for s in STUDY["seeds"]]
  for (name, data_name, loss, init), seed in jobs:
    res_path = results / f"{name}_seed{seed}.json"
    head_path = workdir / "heads" / f"{name}_seed{seed}.npy"
    if res_path.exists() and head_path.exists():
      old = json.loads(res_path.read_text())
      if {k: old.get(k) for k in key} == key:
        heads[(name, seed)] = np.load(head_path)
        continue
    if name == EXPO["name"]:
      kernel, res = _expo(seed, heads, ev, data)
    else:
      kernel, res = _train_one(name, data_name, loss, init, seed, data, feats, heads, ev)
    heads[(name, seed)] = kernel
    np.save(head_path, kernel)
    res_path.write_text(_to_json(res))
    m = res["metrics"]
    log(f"{name} seed {seed}: RB {m['rewardbench']['mean_of_present_sections']:.3f} "
        f"HS held-out {m['hs_heldout_acc']:.3f} mix held-out {m['mix_heldout_acc']:.3f} "
        f"({res['seconds']:.0f} s)")


def stage_export(data: dict[str, Any], feats: dict[str, np.ndarray], workdir: Path, pre: Pretrained,
                 data_dir: str, results: Path = RESULTS) -> None:
  """Exports one trained head with the backbone as a Hugging Face reward model and checks that
  the built-in evaluator's rewards for it equal the cached-feature rewards (float32; batches are
  composed and padded differently, hence the absolute tolerance)."""
  c = EXPORT_CHECK
  kernel = np.load(workdir / "heads" / f"{c['variant']}_seed{c['seed']}.npy")
  out = workdir / "export" / f"{c['variant']}_seed{c['seed']}"
  params = {"model": pre.params["model"], "score": {"kernel": kernel}}
  if pre.config.scan_layers:
    params = convert.unstack_layers(params)
  cfg = pre.config.replace(scan_layers=False)
  export_hf(params, cfg, out, task="reward", tokenizer=pre.tokenizer)
  res = evaluate(EvalConfig(model=str(out), data=str(Path(data_dir) / STUDY["rb_file"]),
                            output=str(workdir / "export" / "eval"), limit=c["rows"],
                            max_length=STUDY["rb_max_length"], progress=False))
  examples = [json.loads(line) for line in
              (workdir / "export" / "eval" / "examples.jsonl").read_text().splitlines()]
  rb = data["rb_pairs"]
  r = feats["rewardbench"] @ kernel[:, 0]
  by_id = {i: (float(r[a]), float(r[b])) for i, a, b in zip(data["rb_ids"], rb.chosen, rb.rejected)}
  diffs, agree = [], 0
  for ex in examples:
    ours = by_id[ex["id"]]
    diffs += [abs(ex["reward_chosen"] - ours[0]), abs(ex["reward_rejected"] - ours[1])]
    agree += int((ours[0] > ours[1]) == ex["correct"])
  check = {**c, "pairs": len(examples), "max_abs_diff": float(max(diffs)), "agree": agree,
           "evaluator_accuracy": res["accuracy"],
           "reward_scale": float(np.abs([ex["reward_chosen"] for ex in examples]).max())}
  (results / "export_check.json").write_text(_to_json(check))
  print(f"export check: max |diff| {check['max_abs_diff']:.2e} over {2 * len(examples)} "
        f"sequences, {agree}/{len(examples)} decisions agree")
  if check["max_abs_diff"] > c["tolerance"]:
    raise SystemExit(f"export check failed: {check['max_abs_diff']:.3e} > {c['tolerance']}")


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--workdir", default=str(WORKDIR))
  ap.add_argument("--data-dir", default=SHARED_DATA)
  ap.add_argument("--stage", default="all", choices=("all", "features", "train", "export",
                                                     "report"))
  ap.add_argument("--batch-size", type=int, default=8)
  args = ap.parse_args(argv)
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if args.stage == "report":
    report.main()
    return
  pre = runs.load_model(STUDY["model"], scan_layers=True)
  t0 = time.perf_counter()
  data = build_data(STUDY, args.data_dir, pre.tokenizer)
  print(f"data encoded in {time.perf_counter() - t0:.0f} s")
  for line in data["reports"]:
    print(" ", line)
  feats, figures = stage_features(data, workdir, pre, args.batch_size)
  if args.stage == "features":
    return
  if args.stage in ("all", "train"):
    stage_train(data, feats, workdir)
    write_budget(data, figures, RESULTS)
  if args.stage in ("all", "export"):
    stage_export(data, feats, workdir, pre, args.data_dir)
  if args.stage == "all":
    report.main()


if __name__ == "__main__":
  main()
