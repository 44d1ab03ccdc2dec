"""Iterative DPO from the model's own generations: Self-Rewarding and SPIN.

  python -m helpsteer_jax.iterative --config experiments/self_rewarding.py:tiny --workdir W
  python -m helpsteer_jax.iterative --config experiments/spin.py:tiny --workdir W

Both loops run `loop.rounds` rounds; round r starts from the policy of round r - 1 (the start
model for r = 0), which is also that round's frozen DPO reference, and writes W/round_r/:

* Self-Rewarding (Yuan et al. 2024): `generations.jsonl`, `loop.samples_per_prompt` responses per
  prompt sampled from the current policy (the KV-cache sampler); `judgments.jsonl`, each response
  graded by the *same* model with the rubric (evaluation/judges.py, expected or sampled score);
  `pairs.jsonl`, per prompt the highest- against the lowest-scored response, skipped when their
  scores differ by `loop.min_score_gap` or less (ties) or when a response has no score;
* SPIN (Chen et al. 2024): `generations.jsonl`, the policy's own response to every SFT prompt;
  `pairs.jsonl`, the SFT response chosen against that generation (skipped when identical), trained
  with the SPIN loss (`losses.spin`, DPO-shaped);
* `dpo/`: the library's DPO trainer (helpsteer_jax.train, `config.dpo`) on `pairs.jsonl`,
  resumable like any run; `summary.json`: counts, the judge's score distribution, the DPO accuracy
  on the round's pairs before and after, and the optional outside check (`loop.monitor`, a scalar
  reward model never trained on here, scoring the round's generations).

After the last round, `final/generations.jsonl` (and its monitor scores) shows the last policy.
Every stage is skipped when its output exists, so an interrupted loop resumes where it stopped.
"""
from __future__ import annotations

import collections
import copy
import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np

from helpsteer_jax import runs
from helpsteer_jax import train as dpo_train
from helpsteer_jax.data import load_ratings
from helpsteer_jax.data.chat import check_response, prompt_messages
from helpsteer_jax.data.encoding import ChatEncoder
from helpsteer_jax.data.reading import read_split, require
from helpsteer_jax.data.records import Counts, Message
from helpsteer_jax.evaluation import judges
from helpsteer_jax.evaluation.response_sets import reward_model_score_fn
from helpsteer_jax.evaluation.scorer import Scorer
from helpsteer_jax.models import LlamaRewardModel
from helpsteer_jax.rlhf.generate import SamplingConfig, eos_ids_of, generate, left_pad
from helpsteer_jax.rlhf.prompts import encode_prompts, load_prompts
from helpsteer_jax.training import launch, metrics_log

KINDS = ("self_rewarding", "spin")


# ----------------------------------------------------------------------------- files
def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
  """Whole or not at all: a stage's output exists only once it is complete."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".tmp")
  tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                 encoding="utf-8")
  tmp.rename(path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
  return [json.loads(l) for l in path.read_text(encoding="utf-8").splitlines()]


# ----------------------------------------------------------------------------- data
def sft_examples(spec: Any, limit: int = 0) -> list[tuple[list[Message], str]]:
  """(prompt, response) pairs of SFT data: format "prompt_response" (a `prompt` column, string or
  messages, and a `response`), or a HelpSteer ratings file, where each prompt's most helpful
  response (the first among equals) is the SFT target."""
  spec = dict(spec)
  if spec.get("format") == "prompt_response":
    out = []
    rows = read_split(spec["path"], spec.get("split"), counts=Counts(source=str(spec["path"])),
                      validation_fraction=float(spec.get("validation_fraction", 0.0)),
                      prompt_key=lambda row: str(row.get("prompt", "")))
    for source, row_no, row in rows:
      require(row, ("prompt", "response"), source, row_no)
      out.append((prompt_messages(row["prompt"], source, row_no),
                  check_response(row["response"], source, row_no, "response")))
  else:
    rated, _ = load_ratings(spec)
    best: dict[str, tuple[float, list[Message], str]] = {}
    for ex in rated:
      key = json.dumps(ex.messages, sort_keys=True)
      h = ex.attributes.get("helpfulness")
      h = -1.0 if h is None else float(h)
      if key not in best or h > best[key][0]:
        best[key] = (h, ex.messages, ex.response)
    out = [(m, r) for _, m, r in best.values()]
  return out[:limit] if limit and limit > 0 else out


# ----------------------------------------------------------------------------- the loop
class Loop:
  """One Self-Rewarding or SPIN run in `workdir` (see the module docstring)."""

  def __init__(self, config: ml_collections.ConfigDict, workdir: str | Path):
    self.c, self.workdir = config, Path(workdir)
    if config.loop.kind not in KINDS:
      raise ValueError(f"loop.kind must be one of {KINDS}, got {config.loop.kind!r}")
    self.workdir.mkdir(parents=True, exist_ok=True)
    (self.workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
    tok = runs.tokenizer_of(config.policy.source, config.policy.get("tokenizer"))
    lp = config.prompts
    if config.loop.kind == "spin":
      sft = sft_examples(config.sft, limit=lp.max_prompts)
      prompts, ids, dropped = encode_prompts([m for m, _ in sft], tok, lp.max_prompt_length)
      target = {json.dumps(m, sort_keys=True): r for m, r in sft}
      self.targets = [target[json.dumps(m, sort_keys=True)] for m in prompts]
    else:
      prompts, ids, dropped = encode_prompts(load_prompts(lp.spec, limit=lp.max_prompts), tok,
                                             lp.max_prompt_length)
    if not prompts:
      raise ValueError(f"no prompt fits prompts.max_prompt_length={lp.max_prompt_length}")
    self.prompts, self.prompt_ids, self.dropped = prompts, ids, dropped
    self.log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

  def policy_source(self, r: int) -> str:
    return self.c.policy.source if r == 0 else str(self.workdir / f"round_{r - 1}" / "dpo")

  # --- generation
  def generate(self, source: str, n: int, seed: int) -> list[list[str]]:
    """`n` sampled responses of the policy at `source` to every prompt."""
    lc = self.c.loop
    pre = runs.load_model(source, scan_layers=False, remat_policy="none")
    tok = pre.tokenizer
    sc = SamplingConfig(max_new_tokens=lc.max_new_tokens, temperature=lc.temperature,
                        top_p=lc.top_p, eos_ids=eos_ids_of(tok.eos_token_id),
                        pad_id=tok.pad_token_id or 0)
    params = jax.device_put(pre.causal_lm_params())
    rows = [s for s in self.prompt_ids for _ in range(n)]
    texts: list[str] = []
    bar = metrics_log.progress_bar(range(0, len(rows), lc.batch_size), desc="generate",
                                   unit="batch")
    t0, sampled = time.perf_counter(), 0
    for b, start in enumerate(bar):
      ids, mask = left_pad(rows[start:start + lc.batch_size], sc.pad_id, 32)
      gen = generate(params, pre.config, ids, mask,
                     jax.random.fold_in(jax.random.PRNGKey(seed), b), sc)
      tokens, resp = np.asarray(gen.tokens), np.asarray(gen.response_mask)
      sampled += int(resp.sum())
      bar.set_postfix_str(f"gen_tokens_per_s={sampled / (time.perf_counter() - t0):.4g}",
                          refresh=False)
      texts += [tok.decode(t[m.astype(bool)], skip_special_tokens=True).strip()
                for t, m in zip(tokens, resp)]
    return [texts[i * n:(i + 1) * n] for i in range(len(self.prompts))]

  def _generations(self, path: Path, source: str, n: int, seed: int) -> list[list[str]]:
    if not path.exists():
      t0 = time.time()
      gens = self.generate(source, n, seed)
      _write_jsonl(path, [{"prompt": p, "responses": g} for p, g in zip(self.prompts, gens)])
      self.log(f"{path}: {len(gens)} prompts x {n} responses in {time.time() - t0:.0f} s")
    return [r["responses"] for r in _read_jsonl(path)]

  # --- pairs
  def _judge(self, d: Path, source: str, gens: list[list[str]]) -> list[list[Optional[float]]]:
    path = d / "judgments.jsonl"
    if not path.exists():
      lc = self.c.loop
      judge = judges.load_judge(source, lc.judge_scorer, samples=lc.judge_samples,
                                batch_size=lc.batch_size, seed=self.c.seed)
      flat_p = [p for p, g in zip(self.prompts, gens) for _ in g]
      flat_r = [r for g in gens for r in g]
      out = judge(flat_p, flat_r)
      scores = out.expected if lc.judge_scorer == "expected" else out.mean
      rows, k = [], 0
      for p, g in zip(self.prompts, gens):
        row = {"prompt": p, "scores": [None if np.isnan(x) else float(x)
                                       for x in scores[k:k + len(g)]]}
        if lc.judge_scorer == "sampled":
          row["judgments"] = out.judgments[k:k + len(g)]
        rows.append(row)
        k += len(g)
      _write_jsonl(path, rows)
    return [r["scores"] for r in _read_jsonl(path)]

  def _pairs(self, d: Path, r: int, gens: list[list[str]]) -> dict[str, Any]:
    """Writes pairs.jsonl; returns what the summary reports about them."""
    skipped: collections.Counter = collections.Counter()
    pairs, info = [], {}
    if self.c.loop.kind == "self_rewarding":
      scores = self._judge(d, self.policy_source(r), gens)
      flat = [s for row in scores for s in row]
      info["judge_scores"] = {
          "unscorable": sum(s is None for s in flat),
          "histogram": {str(k): v for k, v in sorted(collections.Counter(
              round(s) for s in flat if s is not None).items())},
          "mean": float(np.mean([s for s in flat if s is not None])) if any(
              s is not None for s in flat) else None}
      for p, g, s in zip(self.prompts, gens, scores):
        if any(x is None for x in s):
          skipped["unscorable"] += 1
          continue
        hi, lo = int(np.argmax(s)), int(np.argmin(s))
        if s[hi] - s[lo] <= self.c.loop.min_score_gap:
          skipped["tie"] += 1
          continue
        if g[hi] == g[lo]:
          skipped["identical"] += 1
          continue
        pairs.append({"prompt": p, "chosen": g[hi], "rejected": g[lo],
                      "strength": float(s[hi] - s[lo])})
    else:
      for p, g, target in zip(self.prompts, gens, self.targets):
        if not g[0] or g[0] == target:
          skipped["identical_or_empty"] += 1
          continue
        pairs.append({"prompt": p, "chosen": target, "rejected": g[0]})
    _write_jsonl(d / "pairs.jsonl", pairs)
    return {**info, "pairs": len(pairs), "skipped": dict(skipped)}

  # --- DPO
  def dpo_config(self, r: int) -> ml_collections.ConfigDict:
    c = copy.deepcopy(self.c.dpo)
    pairs = str(self.workdir / f"round_{r}" / "pairs.jsonl")
    c.model.source = self.policy_source(r)
    c.data.train = dict(format="chosen_rejected", path=pairs, split="all")
    c.data.eval = dict(format="chosen_rejected", path=pairs, split="all")
    c.seed = self.c.seed + r
    return c

  # --- outside check
  def _monitor(self, path: Path, gens: list[list[str]]) -> Optional[float]:
    if not self.c.loop.get("monitor"):
      return None
    if not path.exists():
      pre = runs.load_model(self.c.loop.monitor, scan_layers=False, remat_policy="none")
      scorer = Scorer(LlamaRewardModel(pre.config, num_labels=pre.num_labels),
                      pre.reward_params(), pad_id=pre.tokenizer.pad_token_id or 0)
      fn = reward_model_score_fn(scorer, ChatEncoder(pre.tokenizer,
                                                     pre.config.max_position_embeddings))
      flat_p = [p for p, g in zip(self.prompts, gens) for _ in g]
      scores = np.asarray(fn(flat_p, [x for g in gens for x in g]), np.float64)
      path.write_text(json.dumps({"monitor": self.c.loop.monitor,
                                  "mean": float(np.nanmean(scores)),
                                  "scores": [float(x) for x in scores]}) + "\n")
    return json.loads(path.read_text())["mean"]

  # --- the rounds
  def run(self) -> dict[str, Any]:
    lc = self.c.loop
    n = lc.samples_per_prompt if lc.kind == "self_rewarding" else 1
    rounds = []
    for r in range(lc.rounds):
      d = self.workdir / f"round_{r}"
      summary_path = d / "summary.json"
      if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if lc.get("monitor") and summary.get("monitor_mean_on_generations") is None:
          # A finished round rerun with loop.monitor set: the outside check is added to it from
          # the round's stored generations (nothing else is redone).
          gens = self._generations(d / "generations.jsonl", self.policy_source(r), n,
                                   self.c.seed + 101 * r)
          summary["monitor_mean_on_generations"] = self._monitor(d / "monitor.json", gens)
          summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        rounds.append(summary)
        continue
      self.log(f"round {r}: policy {self.policy_source(r)}")
      gens = self._generations(d / "generations.jsonl", self.policy_source(r), n,
                               self.c.seed + 101 * r)
      info = self._pairs(d, r, gens)
      if info["pairs"] == 0:
        raise ValueError(f"round {r}: no pairs ({info['skipped']}); nothing to train on")
      out = dpo_train.train(self.dpo_config(r), str(d / "dpo"))
      if out.get("preempted"):
        raise KeyboardInterrupt(f"round {r}: DPO stopped by a signal; rerun to resume")
      summary = {"round": r, "policy": self.policy_source(r), **info,
                 "dpo_accuracy_before": (out.get("eval_before") or {}).get("accuracy"),
                 "dpo_accuracy_after": (out.get("eval_after") or {}).get("accuracy"),
                 "monitor_mean_on_generations": self._monitor(d / "monitor.json", gens)}
      summary_path.write_text(json.dumps(summary, indent=2) + "\n")
      rounds.append(summary)
    final = self.workdir / "final"
    gens = self._generations(final / "generations.jsonl", self.policy_source(lc.rounds), n,
                             self.c.seed + 101 * lc.rounds)
    result = {"kind": lc.kind, "rounds": rounds, "prompts": len(self.prompts),
              "prompts_too_long": self.dropped,
              "final_monitor_mean": self._monitor(final / "monitor.json", gens)}
    (self.workdir / "summary.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def loop(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  out = Loop(config, workdir).run()
  print(json.dumps({"kind": out["kind"], "prompts": out["prompts"], "rounds": len(out["rounds"])}))
  return out


def run() -> None:
  """`python -m helpsteer_jax.iterative --config ... --workdir ...` (training/launch.py flags)."""
  launch.run(loop)


if __name__ == "__main__":
  run()
