"""The paper's matched-data comparison (BT family vs SteerLM regression, and the recipe that combines
them), reproduced small on this CPU with the packaged SmolLM2-135M-Instruct and ../shared/data.

  python experiments/reproduce_small.py                 # the whole study, resumable
  python experiments/reproduce_small.py --stage report  # only regenerate experiments/REPORT.md

Design (chosen for a budget of about one CPU hour on 2 cores; stated again in the report):
  - The SmolLM2 backbone is frozen; every reward model is the backbone plus a trained linear
    `score` head on the final hidden state at the last token. The backbone runs once per distinct
    sequence (helpsteer_jax.features caches h_last); heads train in seconds (helpsteer_jax.probe),
    so every variant gets several seeds. A trained head exported with the backbone is an ordinary
    reward model; the `export` stage checks that the built-in evaluator's rewards for it equal the
    cached-feature rewards.
  - Matched data: helpsteer_v1_sample.jsonl as ratings (5 attributes / helpfulness only) and as
    same-prompt pairs (strength = helpfulness difference, ties dropped); 20% of prompts held out
    by hash (the library's validation split), the same prompts for ratings and pairs.
  - Mix: HH-RLHF helpful + harmless samples, PandaLM (vote strength), Stack Exchange (score
    strength; first `se_questions` questions), Arena; 10% of prompts held out.
  - RewardBench: rewardbench_filtered_head500.jsonl (Chat + part of Chat Hard), official weighting.

Everything goes to --workdir (features, per-run results); the result files the report reads are
written to experiments/results/reproduce_small/ and the report to experiments/REPORT.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.base import ATTRIBUTES, SHARED_DATA  # pylint: disable=g-import-not-at-top

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results" / "reproduce_small"

STUDY = dict(
    model="smollm2",
    hs_file="helpsteer_v1_sample.jsonl",
    hs_validation_fraction=0.2,
    hs_max_length=2048,
    mix_validation_fraction=0.1,
    mix_max_length=1024,
    se_questions=250,
    rb_file="rewardbench_filtered_head500.jsonl",
    rb_max_length=2048,
    seeds=(0, 1, 2),
)
MIX = (  # (name, format, file)
    ("hh_helpful", "hh_rlhf", "hh_rlhf_helpful_train_sample500.jsonl"),
    ("hh_harmless", "hh_rlhf", "hh_rlhf_harmless_train_sample500.jsonl"),
    ("pandalm", "pandalm", "pandalm_testset_v1.json"),
    ("stack_exchange", "stack_exchange", "stack_exchange_preferences_sample500.jsonl"),
    ("arena", "arena", "arena_human_preference_sample500.jsonl"),
)


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class PairSet:
  """Pairs as indices into one feature group's sequence list."""
  chosen: np.ndarray  # int [P]
  rejected: np.ndarray  # int [P]
  strength: np.ndarray  # float [P]
  source: list[str]  # per pair
  chosen_len: np.ndarray  # response tokens, for the length-bias figures
  rejected_len: np.ndarray


@dataclasses.dataclass
class RatingSet:
  index: np.ndarray  # int [N]
  labels: np.ndarray  # float [N, 5]
  label_mask: np.ndarray  # float [N, 5]


class Group:
  """The distinct token sequences of one data group, in a fixed (length-sorted) order."""

  def __init__(self, name: str):
    self.name = name
    self._index: dict[bytes, int] = {}
    self.sequences: list[np.ndarray] = []

  def add(self, ids: np.ndarray) -> int:
    key = np.asarray(ids, np.int32).tobytes()
    if key not in self._index:
      self._index[key] = len(self.sequences)
      self.sequences.append(np.asarray(ids, np.int32))
    return self._index[key]

  def finalize(self) -> np.ndarray:
    """Sorts sequences by (length, ids); returns old -> new index map."""
    order = sorted(range(len(self.sequences)),
                   key=lambda i: (len(self.sequences[i]), self.sequences[i].tobytes()))
    remap = np.empty(len(order), np.int64)
    remap[np.asarray(order, np.int64)] = np.arange(len(order))
    self.sequences = [self.sequences[i] for i in order]
    self._index = {s.tobytes(): k for k, s in enumerate(self.sequences)}
    return remap


def _pairs(group: Group, encoded: list, source: str | list[str]) -> PairSet:
  c = [group.add(e.chosen.input_ids) for e in encoded]
  r = [group.add(e.rejected.input_ids) for e in encoded]
  srcs = source if isinstance(source, list) else [source] * len(encoded)
  return PairSet(np.asarray(c), np.asarray(r), np.asarray([e.strength for e in encoded], np.float32),
                 srcs,
                 np.asarray([len(e.chosen.input_ids) - e.chosen.prompt_len for e in encoded]),
                 np.asarray([len(e.rejected.input_ids) - e.rejected.prompt_len for e in encoded]))


def _remap(ps: PairSet | RatingSet, remap: np.ndarray) -> None:
  if isinstance(ps, PairSet):
    ps.chosen, ps.rejected = remap[ps.chosen], remap[ps.rejected]
  else:
    ps.index = remap[ps.index]


def _concat(sets: list[PairSet]) -> PairSet:
  return PairSet(*(np.concatenate([getattr(s, f) for s in sets]) if f != "source"
                   else sum((s.source for s in sets), [])
                   for f in ("chosen", "rejected", "strength", "source", "chosen_len",
                             "rejected_len")))


def build_data(study: dict[str, Any], data_dir: str, tokenizer: Any) -> dict[str, Any]:
  """Encodes every source once; returns groups and index sets plus the counts reports."""
  from helpsteer_jax.data import (encode_pairs, encode_ratings, load_preferences,  # pylint: disable=g-import-not-at-top
                                  load_ratings)
  from helpsteer_jax.data.encoding import ChatEncoder  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.evaluate import load_pairs  # pylint: disable=g-import-not-at-top

  d = Path(data_dir)
  reports: list[str] = []
  hs, mix, rb = Group("helpsteer"), Group("mix"), Group("rewardbench")
  out: dict[str, Any] = {"groups": {"helpsteer": hs, "mix": mix, "rewardbench": rb}}

  # Matched HelpSteer data: ratings and pairs from the same rows, the same held-out prompts.
  for split in ("train", "validation"):
    spec = dict(path=str(d / study["hs_file"]), split=split,
                validation_fraction=study["hs_validation_fraction"])
    rated, counts = load_ratings(dict(spec, format="helpsteer_ratings",
                                      attributes=tuple(ATTRIBUTES)))
    enc = encode_ratings(rated, tokenizer, study["hs_max_length"], counts=counts)
    reports.append(counts.report())
    labels = np.asarray([[np.nan if e.attributes.get(a) is None else e.attributes[a]
                          for a in ATTRIBUTES] for e in enc], np.float32)
    out[f"hs_ratings_{split}"] = RatingSet(
        np.asarray([hs.add(e.sequence.input_ids) for e in enc]), np.nan_to_num(labels),
        (~np.isnan(labels)).astype(np.float32))
    pairs, counts = load_preferences(dict(spec, format="helpsteer_ratings_pairs"), loss="bt")
    enc = encode_pairs(pairs, tokenizer, study["hs_max_length"], counts=counts)
    reports.append(counts.report())
    out[f"hs_pairs_{split}"] = _pairs(hs, enc, "helpsteer")

  # The larger preference mix.
  for split in ("train", "validation"):
    sets = []
    for name, fmt, file in MIX:
      pairs, counts = load_preferences(dict(format=fmt, path=str(d / file), split=split,
                                            validation_fraction=study["mix_validation_fraction"],
                                            skip_invalid=True),  # counted in the report
                                       loss="bt")
      if name == "stack_exchange":
        kept = [p for p in pairs if p.row <= study["se_questions"]]
        counts.skip("beyond_se_questions", len(pairs) - len(kept))
        pairs = kept
      enc = encode_pairs(pairs, tokenizer, study["mix_max_length"], counts=counts)
      reports.append(counts.report())
      sets.append(_pairs(mix, enc, name))
    out[f"mix_pairs_{split}"] = _concat(sets)

  # RewardBench rows, encoded as the built-in evaluator does.
  rows = load_pairs(str(d / study["rb_file"]))
  encoded = ChatEncoder(tokenizer, study["rb_max_length"]).encode_many(
      [(p.messages, (p.chosen, p.rejected)) for p in rows], [f"{p.source}:{p.line}" for p in rows])
  kept_rows, c, r, cl, rl = [], [], [], [], []
  for p, (seqs, _) in zip(rows, encoded):
    if seqs is None:
      continue
    kept_rows.append(p)
    c.append(rb.add(seqs[0].input_ids))
    r.append(rb.add(seqs[1].input_ids))
    cl.append(len(seqs[0].input_ids) - seqs[0].prompt_len)
    rl.append(len(seqs[1].input_ids) - seqs[1].prompt_len)
  reports.append(f"{study['rb_file']}: rows={len(rows)} kept={len(kept_rows)} "
                 f"too_long={len(rows) - len(kept_rows)} (max_length {study['rb_max_length']})")
  out["rb_pairs"] = PairSet(np.asarray(c), np.asarray(r), np.ones(len(c), np.float32),
                            [p.subset for p in kept_rows], np.asarray(cl), np.asarray(rl))
  out["rb_ids"] = [p.id for p in kept_rows]

  for g in (hs, mix, rb):
    remap = g.finalize()
    for key, val in out.items():
      if isinstance(val, (PairSet, RatingSet)) and _group_of(key) == g.name:
        _remap(val, remap)
  out["reports"] = reports
  return out


def _group_of(key: str) -> str:
  return {"hs": "helpsteer", "mix": "mix", "rb": "rewardbench"}[key.split("_")[0]]


# ----------------------------------------------------------------------------- stages


def stage_features(data: dict[str, Any], workdir: Path, pre: Any, batch_size: int,
                   log=print) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Features of every group (computing missing chunks) and the extraction figures."""
  from helpsteer_jax.features import FeatureCache, scorer_for  # pylint: disable=g-import-not-at-top
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


# (name, data, loss, init): every variant is trained with every seed; `init` names the variant
# whose head (same seed) starts this one, its helpfulness column reused as the reward.
VARIANTS = (
    ("random_head", "hs", "none", None),  # the N(0, 0.02) init, untrained: the chance baseline
    ("bt", "hs", "bt", None),
    ("margin_bt", "hs", "margin_bt", None),
    ("scaled_bt", "hs", "scaled_bt", None),
    ("regression_5attr", "hs", "regression", None),
    ("regression_helpfulness", "hs", "regression_helpfulness", None),
    ("bt_from_regression", "hs", "bt", "regression_helpfulness"),
    ("margin_bt_from_regression", "hs", "margin_bt", "regression_helpfulness"),
    ("scaled_bt_from_regression", "hs", "scaled_bt", "regression_helpfulness"),
    ("mix_bt", "mix", "bt", None),
    ("mix_margin_bt", "mix", "margin_bt", None),
    ("mix_scaled_bt", "mix", "scaled_bt", None),
    ("mix_scaled_bt_from_regression", "mix", "scaled_bt", "regression_helpfulness"),
)
# ExPO (Zheng et al. 2024): aligned + a * (aligned - init), init = the regression head it started
# from. a is picked per seed by accuracy on the *training* pairs (never on held-out or RewardBench
# data); the report also shows every a of the grid.
EXPO = dict(name="expo_scaled_bt_from_regression", aligned="scaled_bt_from_regression",
            init="regression_helpfulness", alphas=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0))
PROBE = dict(lr=1e-3, epochs=20, batch_size=16, weight_decay=0.0, warmup_fraction=0.1)


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
    from helpsteer_jax.evaluation import rewardbench  # pylint: disable=g-import-not-at-top
    r_hs, r_mix, r_rb = (self.rewards(kernel, g) for g in ("helpsteer", "mix", "rewardbench"))
    rb = self.d["rb_pairs"]
    s = rewardbench.summarize(rb.source, r_rb[rb.chosen], r_rb[rb.rejected])
    return {"hs_heldout_acc": self._acc("helpsteer", self.d["hs_pairs_validation"], r_hs),
            "mix_heldout_acc": self._acc("mix", self.d["mix_pairs_validation"], r_mix),
            "rb_mean": s["mean_of_present_sections"]}

  def full(self, kernel: np.ndarray) -> dict[str, Any]:
    from helpsteer_jax.evaluate import length_bias  # pylint: disable=g-import-not-at-top
    from helpsteer_jax.evaluation import rewardbench  # pylint: disable=g-import-not-at-top
    r_hs, r_mix, r_rb = (self.rewards(kernel, g) for g in ("helpsteer", "mix", "rewardbench"))
    rb, hs_val = self.d["rb_pairs"], self.d["hs_pairs_validation"]
    summary = rewardbench.summarize(rb.source, r_rb[rb.chosen], r_rb[rb.rejected])
    examples = [{"reward_chosen": float(r_rb[c]), "reward_rejected": float(r_rb[r]),
                 "chosen_tokens": int(lc), "rejected_tokens": int(lr), "correct": bool(r_rb[c] > r_rb[r])}
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
        "rb_length_bias": length_bias(examples),
    }
    mix_val = self.d["mix_pairs_validation"]
    srcs = np.asarray(mix_val.source)
    out["mix_heldout_acc_by_source"] = {
        s: float(np.mean(r_mix[mix_val.chosen[srcs == s]] > r_mix[mix_val.rejected[srcs == s]]))
        for s in sorted(set(mix_val.source))}
    return out


def _train_one(name: str, data_name: str, loss: str, init: str | None, seed: int,
               data: dict[str, Any], feats: dict[str, np.ndarray], heads: dict[tuple[str, int], np.ndarray],
               ev: Evaluator) -> tuple[np.ndarray, dict[str, Any]]:
  from helpsteer_jax import probe  # pylint: disable=g-import-not-at-top
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


def _expo(seed: int, heads, ev: Evaluator, data: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
  from helpsteer_jax.expo import extrapolate  # pylint: disable=g-import-not-at-top
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


EXPORT_CHECK = dict(variant="scaled_bt_from_regression", seed=0, rows=24, tolerance=2e-3)


def stage_export(data: dict[str, Any], feats: dict[str, np.ndarray], workdir: Path, pre: Any,
                 data_dir: str, results: Path = RESULTS) -> None:
  """Exports one trained head with the backbone as a Hugging Face reward model and checks that
  the built-in evaluator's rewards for it equal the cached-feature rewards (float32; batches are
  composed and padded differently, hence the absolute tolerance)."""
  from helpsteer_jax import evaluate  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.export import export_hf  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.models import convert  # pylint: disable=g-import-not-at-top
  c = EXPORT_CHECK
  kernel = np.load(workdir / "heads" / f"{c['variant']}_seed{c['seed']}.npy")
  out = workdir / "export" / f"{c['variant']}_seed{c['seed']}"
  params = {"model": pre.params["model"], "score": {"kernel": kernel}}
  if pre.config.scan_layers:
    params = convert.unstack_layers(params)
  cfg = pre.config.replace(scan_layers=False)
  export_hf(params, cfg, out, task="reward", tokenizer=pre.tokenizer)
  res = evaluate.evaluate(evaluate.build_parser().parse_args([
      "--model", str(out), "--data", str(Path(data_dir) / STUDY["rb_file"]),
      "--output", str(workdir / "export" / "eval"), "--limit", str(c["rows"]),
      "--max-length", str(STUDY["rb_max_length"]), "--no-progress"]))
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
  ap.add_argument("--workdir", default=str(ROOT / "runs" / "reproduce_small"))
  ap.add_argument("--data-dir", default=SHARED_DATA)
  ap.add_argument("--stage", default="all", choices=("all", "features", "train", "export",
                                                     "report"))
  ap.add_argument("--batch-size", type=int, default=8)
  args = ap.parse_args(argv)
  workdir = Path(args.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if args.stage == "report":
    from experiments import report_small  # pylint: disable=g-import-not-at-top
    report_small.main()
    return
  from helpsteer_jax.models import load_pretrained  # pylint: disable=g-import-not-at-top
  pre = load_pretrained(STUDY["model"], scan_layers=True)
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
    from experiments import report_small  # pylint: disable=g-import-not-at-top
    report_small.main()


if __name__ == "__main__":
  main()
