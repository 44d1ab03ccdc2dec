"""Part 2: the paper's variants with a fine-tuned top on a frozen bottom (config.FROZEN).

Stages, each skipped when its output exists: the data (the reproduce_small sets, with a dev split
carved from the HelpSteer training prompts); the bottom's output for every distinct sequence
(frozen.HiddenCache); a learning-rate sweep per loss family (seed 0, dev-pair accuracy); every
variant and seed (config.VARIANTS), evaluated on the held-out HelpSteer pairs, the preference-mix
held-out pairs and every RewardBench head500 row; ExPO with alpha chosen on dev; the best model on
dev exported as a Hugging Face reward model and checked against the library's evaluator and
transformers. Results: results/part2/*.json; trained tops: WORKDIR/part2/tops/*.npz.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Callable

import ml_collections
import numpy as np

from benchmarks import machine
from helpsteer_jax import runs
from helpsteer_jax.data import encode_pairs, encode_ratings, load_preferences, load_ratings
from helpsteer_jax.data.reading import in_validation
from helpsteer_jax.data.records import ATTRIBUTES
from helpsteer_jax.evaluation import rewardbench
from helpsteer_jax.evaluation.pair_eval import EvalConfig, evaluate
from helpsteer_jax.expo import extrapolate
from helpsteer_jax.export import export_hf
from helpsteer_jax.models import convert, split
from helpsteer_jax.training.model_setup import fresh_head
from projects.finetune_small import frozen
from projects.finetune_small.config import (DATA, EXPO, EXPORT_CHECK, FROZEN, LR_FAMILY,
                                            VARIANTS)
from projects.reproduce_small.config import STUDY as PROBE_STUDY
from projects.reproduce_small.data import Group, mix_pairs, rating_labels, rewardbench_rows

Log = Callable[[str], None]


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class Sets:
  groups: dict[str, Group]  # helpsteer, mix, rewardbench
  pairs: dict[str, frozen.PairData]  # hs_train, hs_dev, hs_validation, mix_validation, rewardbench
  ratings: dict[str, frozen.RatingData]  # hs_train, hs_dev
  rb_subsets: list[str]
  rb_ids: list[Any]
  mix_sources: list[str]
  reports: list[str]


def _dev(messages: list[dict[str, str]]) -> bool:
  """The dev split: `dev_fraction` of the training prompts, by a hash independent of the
  held-out split's."""
  return in_validation("dev|" + json.dumps(messages, sort_keys=True), FROZEN["dev_fraction"])


def build_sets(data_dir: Path, tokenizer: Any, context: int) -> Sets:
  """Every evaluation and training set; RewardBench rows up to `context` tokens (the model's)."""
  hs, mix, rb = Group("helpsteer"), Group("mix"), Group("rewardbench")
  pairs: dict[str, frozen.PairData] = {}
  ratings: dict[str, frozen.RatingData] = {}
  reports: list[str] = []

  def add_pairs(group: Group, enc: list) -> frozen.PairData:
    return frozen.PairData(np.asarray([group.add(e.chosen.input_ids) for e in enc], np.int64),
                           np.asarray([group.add(e.rejected.input_ids) for e in enc], np.int64),
                           np.asarray([e.strength for e in enc], np.float32))

  for split_name in ("train", "validation"):
    spec = dict(path=str(data_dir / DATA["hs_file"]), split=split_name,
                validation_fraction=DATA["hs_validation_fraction"])
    rated, counts = load_ratings(dict(spec, format="helpsteer_ratings",
                                      attributes=tuple(ATTRIBUTES)))
    prefs, pcounts = load_preferences(dict(spec, format="helpsteer_ratings_pairs"), loss="bt")
    parts = ({"hs_train": False, "hs_dev": True} if split_name == "train"
             else {"hs_validation": None})
    for name, dev in parts.items():
      r_keep = [x for x in rated if dev is None or _dev(x.messages) == dev]
      p_keep = [x for x in prefs if dev is None or _dev(x.messages) == dev]
      enc = encode_ratings(r_keep, tokenizer, FROZEN["max_length"], counts=counts)
      labels, mask = rating_labels(enc)
      ratings[name] = frozen.RatingData(
          np.asarray([hs.add(e.sequence.input_ids) for e in enc], np.int64), labels, mask)
      pairs[name] = add_pairs(hs, encode_pairs(p_keep, tokenizer, FROZEN["max_length"],
                                               counts=pcounts))
      reports.append(f"{name}: {len(ratings[name].index)} rated responses, "
                     f"{len(pairs[name].chosen)} pairs")
    reports += [counts.report(), pcounts.report()]

  study = dict(PROBE_STUDY, mix_max_length=FROZEN["mix_max_length"])
  sources: list[str] = []
  encoded: list = []
  for name, enc in mix_pairs(study, data_dir, tokenizer, "validation", reports.append):
    encoded += enc
    sources += [name] * len(enc)
  pairs["mix_validation"] = add_pairs(mix, encoded)

  rows, seqs = rewardbench_rows(data_dir / DATA["rb_file"], tokenizer, context, reports.append)
  pairs["rewardbench"] = frozen.PairData(
      np.asarray([rb.add(s[0].input_ids) for s in seqs], np.int64),
      np.asarray([rb.add(s[1].input_ids) for s in seqs], np.int64), np.ones(len(seqs), np.float32))
  return Sets({"helpsteer": hs, "mix": mix, "rewardbench": rb}, pairs, ratings,
              [p.subset for p in rows], [p.id for p in rows], sources, reports)


GROUP_OF = {"hs_train": "helpsteer", "hs_dev": "helpsteer", "hs_validation": "helpsteer",
            "mix_validation": "mix", "rewardbench": "rewardbench"}
EVAL_SETS = ("hs_dev", "hs_validation", "mix_validation", "rewardbench")


# ----------------------------------------------------------------------------- models


class Study:
  """The loaded model halves, the cached bottom outputs and the data of part 2."""

  def __init__(self, workdir: Path, data_dir: Path, log: Log = print, source: str = "smollm2"):
    self.workdir, self.log = workdir / "part2", log
    pre = runs.load_model(source)
    self.cfg, self.tokenizer = pre.config, pre.tokenizer
    self.sets = build_sets(data_dir, pre.tokenizer, pre.config.max_position_embeddings)
    params = {"model": pre.params["model"],
              "score": fresh_head(np.random.default_rng(0), self.cfg.hidden_size, 1)}
    k = FROZEN["top_layers"]
    self.bottom_cfg, self.top_cfg, self.bottom, self._top0 = split.split(self.cfg, params, k)
    self.hidden: dict[str, frozen.Hidden] = {}
    for name, group in self.sets.groups.items():
      cache = frozen.HiddenCache(self.workdir / "hidden" / name, self.bottom_cfg, self.bottom)
      seqs = group.sequences
      t0 = time.time()
      self.hidden[name] = cache(seqs, log=log)
      log(f"bottom output {name}: {len(seqs)} sequences, {len(self.hidden[name].data)} tokens "
          f"({cache.seconds():.0f} s computing, {time.time() - t0:.0f} s this call)")
    bf16 = FROZEN["precision"] == "bf16"
    self.train_cfg = self.top_cfg.replace(
        dtype="bfloat16" if bf16 else "float32",
        low_precision_dots="f32_accumulate" if bf16 else "xla", remat_policy="full")

  def fresh_top(self, seed: int, num_labels: int) -> dict[str, Any]:
    """The pretrained top layers and norm with seed `seed`'s N(0, 0.02) head of `num_labels`."""
    return {"model": self._top0["model"],
            "score": fresh_head(np.random.default_rng(seed), self.cfg.hidden_size, num_labels)}

  def data(self, kind: str, name: str) -> frozen.PairData | frozen.RatingData:
    return self.sets.pairs[name] if kind == "pairs" else self.sets.ratings[name]

  def train(self, loss: str, kind: str, top: dict[str, Any], lr: float, epochs: int, seed: int
            ) -> tuple[dict[str, Any], list[dict[str, float]]]:
    optim = ml_collections.ConfigDict(dict(FROZEN["optim"], lr=lr))
    attrs = ("helpfulness",) if loss == "regression_helpfulness" else tuple(ATTRIBUTES)
    return frozen.train_top(self.train_cfg, top, loss,
                            self.hidden["helpsteer"], self.data(kind, "hs_train"), optim,
                            epochs=epochs, batch_size=FROZEN["batch_size"], seed=seed,
                            grad_accum=FROZEN["grad_accum"],
                            attributes=attrs, log=self.log)

  def evaluate(self, top: dict[str, Any], sets: tuple[str, ...] = EVAL_SETS) -> dict[str, Any]:
    """Per evaluation set: accuracy and per-pair correctness (reward = head output 0)."""
    out: dict[str, Any] = {}
    for name in sets:
      p = self.sets.pairs[name]
      hidden = self.hidden[GROUP_OF[name]]
      seqs = np.unique(np.concatenate([p.chosen, p.rejected]))
      r = np.zeros(len(hidden), np.float64)
      r[seqs] = frozen.rewards(self.top_cfg, top, hidden, seqs,
                               batch_size=FROZEN["eval_batch_size"])[:, 0]
      correct = rewardbench.correct(r[p.chosen], r[p.rejected])
      entry = {"accuracy": float(np.mean(correct)),
               "log_loss": pair_log_loss(r[p.chosen], r[p.rejected]),
               "correct": [int(c) for c in correct]}
      if name == "rewardbench":
        s = rewardbench.summarize_correct(self.sets.rb_subsets, correct)
        entry.update(sections=s["sections"], mean=s["mean_of_present_sections"])
      if name == "mix_validation":
        src = np.asarray(self.sets.mix_sources)
        entry["by_source"] = {k: float(np.mean(correct[src == k])) for k in sorted(set(src))}
      out[name] = entry
    return out


def pair_log_loss(chosen: np.ndarray, rejected: np.ndarray) -> float:
  """Mean -log sigmoid(r_c - r_r) over the pairs: the BT likelihood of the held-out pairs, which
  tells apart models of equal accuracy (how sure each is of the pairs it gets right and wrong)."""
  return float(np.mean(np.logaddexp(0.0, -(np.asarray(chosen, np.float64)
                                           - np.asarray(rejected, np.float64)))))


def save_top(path: Path, top: dict[str, Any], meta: dict[str, Any]) -> None:
  """The top's parameters (`path`, written last: its presence means both are whole) and how it
  was trained (`path` with .json)."""
  path.parent.mkdir(parents=True, exist_ok=True)
  path.with_suffix(".json").write_text(json.dumps(meta) + "\n")
  tmp = path.with_suffix(".tmp.npz")
  np.savez(tmp, **{"/".join(p): np.asarray(v) for p, v in convert.flatten(top)})
  tmp.rename(path)


def load_top(path: Path) -> dict[str, Any]:
  out: dict[str, Any] = {}
  with np.load(path) as f:
    for key in f.files:
      convert.set_path(out, tuple(key.split("/")), f[key])
  return out


# ----------------------------------------------------------------------------- stages


def _kind_labels(loss: str) -> tuple[str, int]:
  if loss == "regression":
    return "ratings", len(ATTRIBUTES)
  if loss == "regression_helpfulness":
    return "ratings", 1
  return "pairs", 1


def sweep(study: Study, results: Path) -> dict[str, float]:
  """The learning rate of each loss family: best dev-pair accuracy with seed 0; ties go to the
  lower dev-pair log-loss (pair_log_loss), then to the smaller rate.

  The tie-break by log-loss was added after the first sweep: its BT tie (68.4% at 1e-5 and at
  1e-4 on 19 dev pairs) went to the smaller rate, whose model had not left the starting loss
  (epoch-mean 0.70). A run recorded without its dev log-loss gets it from its kept top, or is
  trained again (the same deterministic call) when the top is gone."""
  path = results / "sweep.json"
  done = json.loads(path.read_text()) if path.exists() else {"runs": []}

  def save() -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(done, indent=1) + "\n")

  for family in sorted(set(LR_FAMILY.values())):
    epochs = next(v[4] for v in VARIANTS if v[0] == family)
    loss = next(v[2] for v in VARIANTS if v[0] == family)
    kind, labels = _kind_labels(loss)
    for lr in FROZEN["lr_grid"]:
      rec = next((r for r in done["runs"] if r["family"] == family and r["lr"] == lr), None)
      if rec is not None and "dev_log_loss" in rec:
        continue
      kept = _sweep_top(study, family, lr)
      if rec is not None and kept.exists():
        study.log(f"sweep {family} lr {lr}: dev log-loss of the kept top")
        top = load_top(kept)
      else:
        study.log(f"sweep {family} lr {lr}")
        t0 = time.time()
        top, curve = study.train(loss, kind, study.fresh_top(0, labels), lr, epochs, seed=0)
        seconds = time.time() - t0
        save_top(kept, top, {"curve": curve, "train_seconds": round(seconds, 1)})
        if rec is not None:
          done["runs"].remove(rec)
        rec = {"family": family, "lr": lr, "final_loss": curve[-1]["loss"],
               "seconds": round(seconds)}
        done["runs"].append(rec)
      dev = study.evaluate(top, ("hs_dev",))["hs_dev"]
      rec.update(dev_accuracy=dev["accuracy"], dev_log_loss=dev["log_loss"])
      save()
  chosen = {}
  for family in sorted(set(LR_FAMILY.values())):
    rs = sorted((r for r in done["runs"] if r["family"] == family),
                key=lambda r: (-r["dev_accuracy"], r["dev_log_loss"], r["lr"]))
    chosen[family] = rs[0]["lr"]
  done["chosen"] = chosen
  done["rule"] = "dev accuracy, then dev log-loss, then the smaller rate"
  save()
  return chosen


def _sweep_top(study: Study, family: str, lr: float) -> Path:
  return study.workdir / "tops" / "sweep" / f"{family}_lr{lr:g}.npz"


def train_variant(study: Study, results: Path, lrs: dict[str, float], name: str, seed: int
                  ) -> None:
  """Trains (ensure_top) and evaluates one variant and seed, unless its result file exists."""
  out = results / f"{name}_seed{seed}.json"
  if out.exists():  # evaluated (a committed result): its top is trained again only if needed
    return
  top = ensure_top(study, results, lrs, name, seed)
  t0 = time.time()
  metrics = study.evaluate(top)
  out.parent.mkdir(parents=True, exist_ok=True)
  meta = json.loads(_top_path(study, name, seed).with_suffix(".json").read_text())
  out.write_text(json.dumps({"variant": name, "seed": seed, **meta,
                             "eval_seconds": round(time.time() - t0, 1),
                             "evaluated_on": machine.header(), "metrics": metrics})
                 + "\n")


def _top_path(study: Study, name: str, seed: int) -> Path:
  return study.workdir / "tops" / f"{name}_seed{seed}.npz"


def ensure_top(study: Study, results: Path, lrs: dict[str, float], name: str, seed: int
               ) -> dict[str, Any]:
  """The trained top of a variant and seed: from this workdir, else trained (again: a later
  session has the committed result but not the workdir) with what it starts from. A sweep
  family's own variant at seed 0 is the sweep's run at the chosen rate (the same call: loss,
  fresh seed-0 head, rate, epochs, seed), so its top is taken from the sweep when kept."""
  _, _, loss, init, epochs = next(v for v in VARIANTS if v[0] == name)
  top_path = _top_path(study, name, seed)
  lr = lrs[LR_FAMILY[name]]
  if top_path.exists():
    meta = json.loads(top_path.with_suffix(".json").read_text())
    if (meta["lr"], meta["epochs"], meta["init"]) == (lr, epochs, init):
      return load_top(top_path)
    study.log(f"{top_path} was trained with lr {meta['lr']}, {meta['epochs']} epoch(s), init "
              f"{meta['init']}; this study's settings differ: trained again")
  kind, labels = _kind_labels(loss)
  if init:
    start = ensure_top(study, results, lrs, init, seed)
  else:
    start = study.fresh_top(seed, labels)
  swept = _sweep_top(study, name, lr)
  if seed == 0 and init is None and LR_FAMILY[name] == name and swept.exists():
    study.log(f"{name} seed 0 (lr {lr}) is the sweep's run: {swept}")
    top = load_top(swept)
    meta = json.loads(swept.with_suffix(".json").read_text())
    curve, seconds = meta["curve"], meta["train_seconds"]
    from_sweep = True
  else:
    study.log(f"training {name} seed {seed} (lr {lr}, {epochs} epoch(s))")
    from_sweep = False
    t0 = time.time()
    top, curve = study.train(loss, kind, start, lr, epochs, seed)
    seconds = time.time() - t0
  save_top(top_path, top, {"loss": loss, "init": init, "lr": lr, "epochs": epochs,
                           "train_seconds": round(seconds, 1), "from_sweep": from_sweep,
                           **({} if from_sweep else {"trained_on": machine.header()}),
                           "top_layers": FROZEN["top_layers"], "curve": curve})
  return top


def top_of(study: Study, results: Path, lrs: dict[str, float], name: str, seed: int
           ) -> dict[str, Any]:
  """ensure_top, and for ExPO its extrapolation with the alpha its result file chose."""
  if name != EXPO["name"]:
    return ensure_top(study, results, lrs, name, seed)
  alpha = json.loads((results / f"{name}_seed{seed}.json").read_text())["alpha"]
  return extrapolate(ensure_top(study, results, lrs, EXPO["init"], seed),
                     ensure_top(study, results, lrs, EXPO["aligned"], seed), alpha)


def expo(study: Study, results: Path, lrs: dict[str, float], seeds: tuple[int, ...]) -> None:
  for seed in seeds:
    out = results / f"{EXPO['name']}_seed{seed}.json"
    if out.exists():
      continue
    aligned = ensure_top(study, results, lrs, EXPO["aligned"], seed)
    init = ensure_top(study, results, lrs, EXPO["init"], seed)
    t0 = time.time()
    grid = {}
    for a in EXPO["alphas"]:
      grid[a] = study.evaluate(extrapolate(init, aligned, a), ("hs_dev",))["hs_dev"]
    # The sweep's rule: dev accuracy, then dev log-loss, then the smaller alpha.
    alpha = sorted(grid, key=lambda a: (-grid[a]["accuracy"], grid[a]["log_loss"], a))[0]
    top = extrapolate(init, aligned, alpha)
    metrics = study.evaluate(top)
    out.write_text(json.dumps({"variant": EXPO["name"], "seed": seed, "alpha": alpha,
                               "eval_seconds": round(time.time() - t0, 1),
                               "evaluated_on": machine.header(),
                               "dev_accuracy_by_alpha": {str(k): v["accuracy"]
                                                         for k, v in grid.items()},
                               "dev_log_loss_by_alpha": {str(k): v["log_loss"]
                                                         for k, v in grid.items()},
                               "metrics": metrics}) + "\n")


def export_best(study: Study, results: Path, lrs: dict[str, float], heldout_file: Path) -> None:
  """The best variant on dev (mean over seeds), seed 0, joined with the bottom and exported as a
  Hugging Face reward model; its rewards from the library's evaluator and from transformers are
  compared with ours on the first EXPORT_CHECK["pairs"] held-out HelpSteer pairs."""
  out = results / "export_check.json"
  if out.exists():  # done, unless this workdir lacks the exported directories (a later session)
    done = json.loads(out.read_text())
    if all(Path(d).is_dir() for d in (done["directory"], done["monitor"]["directory"])):
      return
  dev: dict[str, list[float]] = {}
  for path in results.glob("*_seed*.json"):
    r = json.loads(path.read_text())
    dev.setdefault(r["variant"], []).append(r["metrics"]["hs_dev"]["accuracy"])
  name = sorted(dev, key=lambda k: (-float(np.mean(dev[k])), k))[0]
  top = top_of(study, results, lrs, name, 0)
  directory = study.workdir / "export" / name
  export_hf(split.join(study.bottom, top, study.cfg), study.cfg, directory, task="reward",
            tokenizer=study.tokenizer)
  n = EXPORT_CHECK["pairs"]
  p = study.sets.pairs["hs_validation"]
  hidden = study.hidden["helpsteer"]
  seqs = np.concatenate([p.chosen[:n], p.rejected[:n]])
  ours = frozen.rewards(study.top_cfg, top, hidden, seqs)[:, 0].astype(np.float64)
  check: dict[str, Any] = {"variant": name, "seed": 0, "directory": str(directory), "pairs": n,
                           "tolerance": EXPORT_CHECK["tolerance"],
                           "dev_accuracy_by_variant": {k: float(np.mean(v))
                                                       for k, v in dev.items()}}
  evaluate(EvalConfig(model=str(directory), output=str(directory / "eval_check"),
                      data=str(heldout_file), limit=n, dtype="float32", mode="pairwise",
                      progress=False))
  ex = [json.loads(l) for l in (directory / "eval_check" / "examples.jsonl").read_text()
        .splitlines()]
  theirs = np.asarray([e["reward_chosen"] for e in ex] + [e["reward_rejected"] for e in ex])
  check["library_evaluator_max_abs_diff"] = float(np.max(np.abs(theirs - ours)))
  check["transformers"] = _transformers_rewards(directory, [study.sets.groups["helpsteer"]
                                                           .sequences[i] for i in seqs], ours)
  check["monitor"] = export_monitor(study, results, lrs, dev, name)
  out.write_text(json.dumps(check, indent=1) + "\n")


def export_monitor(study: Study, results: Path, lrs: dict[str, float], dev: dict[str, list[float]],
                   best: str) -> dict[str, Any]:
  """A second reward model for part 3, which the policy is not optimised against: the best
  variant on dev of the other loss family (regression vs the BT family), seed 1."""
  family = lambda v: LR_FAMILY.get(v, LR_FAMILY.get(EXPO["aligned"]))
  others = [v for v in dev if family(v) != family(best)]
  name = sorted(others, key=lambda k: (-float(np.mean(dev[k])), k))[0]
  seed = max(FROZEN["seeds"])
  top = top_of(study, results, lrs, name, seed)
  directory = study.workdir / "export" / f"monitor_{name}_seed{seed}"
  export_hf(split.join(study.bottom, top, study.cfg), study.cfg, directory, task="reward",
            tokenizer=study.tokenizer)
  return {"variant": name, "seed": seed, "directory": str(directory)}


def _transformers_rewards(directory: Path, seqs: list[np.ndarray], ours: np.ndarray
                          ) -> dict[str, Any]:
  """transformers' LlamaForSequenceClassification on the exported directory, batches of 4
  right-padded with the exported pad id (so its last-non-pad-token pooling is what is tested)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    import transformers
  except ImportError as e:
    return {"skipped": f"{e}"}
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      directory, dtype=torch.float32).eval()
  pad = model.config.pad_token_id
  got = []
  for start in range(0, len(seqs), 4):
    chunk = seqs[start:start + 4]
    length = max(len(s) for s in chunk)
    ids = torch.full((len(chunk), length), pad, dtype=torch.long)
    mask = torch.zeros((len(chunk), length), dtype=torch.long)
    for row, s in enumerate(chunk):
      ids[row, :len(s)] = torch.as_tensor(np.asarray(s, np.int64))
      mask[row, :len(s)] = 1
    with torch.no_grad():
      got.append(model(input_ids=ids, attention_mask=mask).logits[:, 0].double().numpy())
  got = np.concatenate(got)
  n = len(got) // 2  # chosen rewards, then rejected
  return {"version": transformers.__version__, "max_abs_diff": float(np.max(np.abs(got - ours))),
          "pair_decisions_agree": int(np.sum((got[:n] > got[n:]) == (ours[:n] > ours[n:]))),
          "pairs": n}


def record_retrained(workdir: Path, results: Path) -> None:
  """Tops this workdir trained again that a committed result file already describes (a later
  session lost the earlier workdir): their loss curves against the committed ones, step by step,
  in results/reproduced.json. A top taken from the sweep is not a retraining."""
  out = results / "reproduced.json"
  rows = {(r["variant"], r["seed"]): r
          for r in (json.loads(out.read_text()) if out.exists() else [])}
  for meta_path in sorted((workdir / "part2" / "tops").glob("*_seed*.json")):
    name, _, seed = meta_path.stem.rpartition("_seed")
    committed = results / f"{name}_seed{seed}.json"
    meta = json.loads(meta_path.read_text())
    if not committed.exists() or meta.get("from_sweep") or "trained_on" not in meta:
      continue
    old = json.loads(committed.read_text())
    if old.get("trained_on") == meta["trained_on"] and old.get("curve") == meta["curve"] and \
        old.get("train_seconds") == meta.get("train_seconds"):
      continue  # the committed result's own top, not a retraining
    a = np.asarray([c["loss"] for c in old["curve"]], np.float64)
    b = np.asarray([c["loss"] for c in meta["curve"]], np.float64)
    same = len(a) == len(b)
    rows[(name, int(seed))] = {
        "variant": name, "seed": int(seed), "steps": [len(a), len(b)],
        "committed_trained_on": old.get("trained_on", "not recorded"),
        "retrained_on": meta["trained_on"],
        "max_abs_loss_difference": float(np.max(np.abs(a - b))) if same else None,
        "bitwise_equal": bool(same and np.array_equal(a, b))}
  if rows:
    out.write_text(json.dumps(sorted(rows.values(), key=lambda r: (r["variant"], r["seed"])),
                              indent=1) + "\n")


def run_part2(workdir: Path, data_dir: Path, results: Path, heldout_file: Path, *,
              only: str | None = None, seeds: tuple[int, ...] | None = None,
              committed_sweep: Path | None = None, log: Log = print,
              source: str = "smollm2") -> None:
  """Everything of part 2 not done yet; with `only`, that variant (and what it starts from),
  taking the learning rates from `committed_sweep` when this workdir has not swept."""
  study = Study(workdir, data_dir, log, source)
  results.mkdir(parents=True, exist_ok=True)
  sets = study.sets
  (results / "sets.json").write_text(json.dumps({
      "reports": sets.reports, "rb_subsets": sets.rb_subsets, "rb_ids": sets.rb_ids,
      "mix_sources": sets.mix_sources,
      "sizes": {**{f"{k} pairs": len(v.chosen) for k, v in sets.pairs.items()},
                **{f"{k} rated responses": len(v.index) for k, v in sets.ratings.items()},
                **{f"{k} distinct sequences": f"{len(g.sequences)} "
                   f"({sum(len(x) for x in g.sequences)} tokens)" for k, g in sets.groups.items()}},
      "bottom_seconds": {k: round(frozen.HiddenCache(study.workdir / "hidden" / k,
                                                     study.bottom_cfg, study.bottom).seconds())
                         for k in sets.groups}}, indent=1) + "\n")
  seeds = seeds or FROZEN["seeds"]
  sweep_file = results / "sweep.json"
  if only and not sweep_file.exists() and committed_sweep and committed_sweep.exists():
    lrs = json.loads(committed_sweep.read_text())["chosen"]
    log(f"learning rates from {committed_sweep}: {lrs}")
  else:
    lrs = sweep(study, results)
  if only == EXPO["name"]:
    for seed in seeds:
      for v in (EXPO["aligned"], EXPO["init"]):
        train_variant(study, results, lrs, v, seed)
    expo(study, results, lrs, seeds)
    return
  names = [only] if only else [v[0] for v in VARIANTS]
  for seed in seeds:
    for name in names:
      train_variant(study, results, lrs, name, seed)
    if not only:  # while this seed's tops are in the workdir
      expo(study, results, lrs, (seed,))
  if not only:
    export_best(study, results, lrs, heldout_file)
  record_retrained(workdir, results)
