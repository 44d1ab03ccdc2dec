"""The fine-tuning study's launcher and report (projects/finetune_small), without training.

What must hold for the TRL comparison to mean anything: the pairs file TRL reads sequentially
gives exactly our trainer's batches, step by step; resumed runs count each step once in the epoch
time; the report's numbers are the result files' (computed here independently).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpsteer_jax.data import PairBatcher
from helpsteer_jax.data.encoding import Encoded, EncodedPair
from projects.finetune_small import report, run
from helpsteer_jax.training import launch


def _pairs(n: int) -> list[EncodedPair]:
  rng = np.random.default_rng(0)
  return [EncodedPair(Encoded(np.full(int(rng.integers(3, 20)), 1000 + i, np.int32), 2),
                      Encoded(np.full(int(rng.integers(3, 20)), 5000 + i, np.int32), 2),
                      1.0, "toy", i) for i in range(n)]


@pytest.mark.parametrize("epochs", [1, 3])
def test_drawn_order_read_in_batch_size_groups_is_our_batches(epochs):
  examples = _pairs(24)
  drawn = run.drawn_order(PairBatcher(examples, 4, seed=7), epochs)
  batcher = PairBatcher(examples, 4, seed=7)
  steps = list(batcher.iterate(len(batcher) * epochs))
  assert len(drawn) == 4 * len(steps)
  for k, batch in enumerate(steps):
    for b in range(4):
      ex = drawn[4 * k + b]
      n = len(ex.chosen.input_ids)
      np.testing.assert_array_equal(batch["input_ids"][b, 0, :n], ex.chosen.input_ids)
      assert batch["attention_mask"][b, 0].sum() == n
      m = len(ex.rejected.input_ids)
      np.testing.assert_array_equal(batch["input_ids"][b, 1, :m], ex.rejected.input_ids)


def test_drawn_order_refuses_a_part_filler_batch():
  with pytest.raises(ValueError, match="does not divide the 23 training pairs"):
    run.drawn_order(PairBatcher(_pairs(23), 4, seed=0), 1)


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_step_times_count_each_step_once_across_a_resume(tmp_path):
  # Segment 1 starts at t=100, does steps 1-3 (step 3 after the last checkpoint at 2), is killed;
  # segment 2 starts at t=200 and redoes step 3, then step 4.
  _write_jsonl(tmp_path / "segments.jsonl", [
      {"start": 100.0, "wall_s": 40.0, "peak_rss_gib": 2.0, "loadavg_1min_before": 0.1},
      {"start": 200.0, "wall_s": 30.0, "peak_rss_gib": 3.0, "loadavg_1min_before": 0.2}])
  _write_jsonl(tmp_path / "metrics.jsonl", [
      {"step": 1, "time": 110.0, "train/loss": 0.7}, {"step": 2, "time": 115.0, "train/loss": 0.6},
      {"step": 3, "time": 121.0, "train/loss": 0.5},
      {"step": 3, "time": 212.0, "train/loss": 0.5}, {"step": 4, "time": 219.0, "train/loss": 0.4},
      {"step": 4, "time": 219.5, "eval/accuracy": 0.5}])  # not a training row
  t = run.step_times(tmp_path, "ours")
  # step 1: 10 (from segment start), 2: 5, 3: 12 (redone, from segment 2's start), 4: 7.
  assert t["steps"] == 4
  assert t["epoch_seconds"] == pytest.approx(10 + 5 + 12 + 7)
  assert t["startup_and_first_step_seconds"] == pytest.approx(10 + 12)
  assert t["median_step_seconds"] == pytest.approx(6.0)
  assert t["peak_rss_gib"] == 3.0
  assert t["total_wall_seconds"] == pytest.approx(70.0)


def _result(trainer: str, seed: int, hs: list[int], rb: list[int], subsets: list[str]) -> dict:
  ex = lambda c, k, s=None: {"id": k, "subset": s, "reward_chosen": float(c),
                             "reward_rejected": 0.5, "correct": bool(c)}
  from helpsteer_jax.evaluation import rewardbench  # pylint: disable=g-import-not-at-top
  summary = rewardbench.summarize_correct(subsets, [bool(c) for c in rb])
  return {
      "run": f"bt_{trainer}", "seed": seed, "trainer": trainer,
      "train": {"epoch_seconds": 600.0 * (1 + seed), "median_step_seconds": 20.0,
                "startup_and_first_step_seconds": 40.0, "peak_rss_gib": 4.0,
                "total_wall_seconds": 650.0, "processors": ["cpu X"]},
      "hs_validation": {"accuracy": float(np.mean(hs)), "pairs": {"rows": len(hs),
                                                                   "scored": len(hs)},
                        "seconds": 10.0, "examples": [ex(c, f"h{i}") for i, c in enumerate(hs)]},
      "rewardbench": {"accuracy": float(np.mean(rb)), "pairs": {"rows": len(rb),
                                                                 "scored": len(rb)},
                      "seconds": 20.0,
                      "rewardbench": {"sections": summary["sections"],
                                      "mean_of_present_sections":
                                          summary["mean_of_present_sections"]},
                      "examples": [ex(c, f"r{i}", s) for i, (c, s) in enumerate(zip(rb, subsets))]},
  }


def test_report_numbers_are_the_result_files(tmp_path):
  rng = np.random.default_rng(1)
  subsets = ["alpacaeval-easy"] * 30 + ["mt-bench-hard"] * 10
  accs = {}
  for trainer, p in (("ours", 0.8), ("trl", 0.6)):
    for seed in (0, 1):
      hs = [int(x) for x in rng.random(50) < p]
      rb = [int(x) for x in rng.random(40) < p]
      accs.setdefault(trainer, []).append(np.mean(hs))
      (tmp_path / f"bt_{trainer}_seed{seed}.json").write_text(
          json.dumps(_result(trainer, seed, hs, rb, subsets)))
  text = report.build(results=tmp_path, out=tmp_path / "REPORT.md", figures=tmp_path / "fig")
  for trainer in ("ours", "trl"):
    a = np.asarray(accs[trainer]) * 100
    assert f"{a.mean():.1f} ± {a.std(ddof=1):.1f}" in text
  diff = (np.mean(accs["ours"]) - np.mean(accs["trl"])) * 100
  assert f"| helpsteer_jax − TRL | {diff:+.1f} (seeds" in text
  assert "10.0 / 20.0" in text  # epoch minutes, seed 0 / seed 1
  assert "`cpu X`" in text
  assert "(no seed has both runs yet)" in text  # no curve files given
  verdict = text[text.index("## Verdict"):text.index("## Part 1")]
  assert "an epoch took 15.0 min with our trainer against 15.0 min with TRL (1.00× TRL's time" \
      in verdict and "at 4.00 against 4.00 GiB peak RSS" in verdict
  assert f"| helpsteer_jax − TRL | {diff:+.1f} (seeds" in text
  hs_cell = text.split("| helpsteer_jax − TRL | ")[1].split(" | ")[0]
  assert f"{hs_cell} on the held-out HelpSteer pairs (**" in verdict


# ----------------------------------------------------------------------------- part 2: frozen bottom


def _tiny_split(tmp_path, k=2):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp
  from flax import linen as nn
  from helpsteer_jax.models import LlamaConfig, LlamaRewardModel, split
  cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
  model = LlamaRewardModel(cfg)
  params = nn.unbox(model.init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32)))["params"]
  return cfg, model, params, split.split(cfg, params, k)


def test_hidden_cache_resumes_and_top_rewards_equal_the_whole_model(tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from projects.finetune_small import frozen  # pylint: disable=g-import-not-at-top
  cfg, model, params, (bcfg, tcfg, bottom, top) = _tiny_split(tmp_path)
  rng = np.random.default_rng(0)
  seqs = [rng.integers(1, 64, int(n)).astype(np.int32) for n in rng.integers(3, 150, 11)]
  cache = frozen.HiddenCache(tmp_path / "h", bcfg, bottom, batch_size=4, chunk=4)
  lines = []
  hidden = cache(seqs, log=lines.append)
  assert len(lines) == 3 and len(hidden) == 11
  again = frozen.HiddenCache(tmp_path / "h", bcfg, bottom, batch_size=4, chunk=4)
  lines2 = []
  np.testing.assert_array_equal(again(seqs, log=lines2.append).data, hidden.data)
  assert not lines2  # every part read from disk
  with pytest.raises(ValueError, match="computed for other sequences"):
    again(seqs[::-1], log=None)
  got = frozen.rewards(tcfg, top, hidden, np.arange(11), batch_size=4)
  # The whole model on the sequences right-padded into one batch: one compiled program (called
  # eagerly once per length, model.apply took 27 s here).
  ids = np.zeros((len(seqs), max(map(len, seqs))), np.int32)
  mask = np.zeros_like(ids)
  for i, s in enumerate(seqs):
    ids[i, :len(s)], mask[i, :len(s)] = s, 1
  want = jax.jit(model.apply)({"params": params}, ids, mask)
  np.testing.assert_allclose(got, np.asarray(want), atol=1e-5)  # float32 both ways


def test_train_top_learns_a_separable_preference(tmp_path):
  """Chosen sequences use tokens 1..31, rejected 32..63: the top must learn to tell them apart
  (pair accuracy from 50% at init to all pairs right; loss well below log 2)."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  from projects.finetune_small import frozen
  _, _, _, (bcfg, tcfg, bottom, top) = _tiny_split(tmp_path)
  rng = np.random.default_rng(1)
  seqs = []
  for _ in range(16):
    seqs.append(rng.integers(1, 32, int(rng.integers(5, 40))).astype(np.int32))
    seqs.append(rng.integers(32, 64, int(rng.integers(5, 40))).astype(np.int32))
  hidden = frozen.HiddenCache(tmp_path / "h", bcfg, bottom, batch_size=8)(seqs, log=None)
  data = frozen.PairData(np.arange(0, 32, 2), np.arange(1, 32, 2), np.ones(16, np.float32))
  optim = ml_collections.ConfigDict(dict(lr=3e-3, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.0,
                                         warmup_steps=1, schedule="constant", decay_steps=0,
                                         final_lr=0.0, grad_clip=1.0))
  trained, curve = frozen.train_top(tcfg, top, "bt", hidden, data, optim, epochs=15,
                                    batch_size=4, seed=0, log=None)
  r = frozen.rewards(tcfg, trained, hidden, np.arange(32))[:, 0]
  assert np.mean(r[data.chosen] > r[data.rejected]) == 1.0
  assert np.mean([c["loss"] for c in curve[-4:]]) < 0.3


# ----------------------------------------------------------------------------- part 3: RLHF


def test_part3_results_and_report_come_from_the_rl_run(tmp_path, smollm2_tokenizer):
  """A tiny RLHF run with evaluation and a monitor; run.rlhf copies its metrics and generations
  into part3.json and the report's part-3 table shows the run's evaluation metrics."""
  del smollm2_tokenizer
  from helpsteer_jax.rlhf.train import train
  from projects.finetune_small.config import REPO
  c = launch.load_config(f"{REPO}/experiments/reinforce.py:tiny")
  c.train.steps = 3
  c.eval.update(every=2, max_prompts=8, monitors={"monitor": "tiny"})
  c.eval.prompts.split = "train"
  run_dir = tmp_path / "work" / "rlhf"
  train(c, str(run_dir))
  _write_jsonl(run_dir / "segments.jsonl", [{"start": 0.0, "wall_s": 36.0, "processor": "cpu Y"}])
  results = tmp_path / "results"
  (results / "part2").mkdir(parents=True)
  (results / "part2" / "export_check.json").write_text(json.dumps(
      {"variant": "bt", "monitor": {"variant": "regression_helpfulness", "seed": 1,
                                    "directory": "d"}}))
  run.rlhf(tmp_path / "work", results)
  part3 = json.loads((results / "part3.json").read_text())
  assert [e["step"] for e in part3["eval"]] == [0, 2, 3]
  assert [t["step"] for t in part3["train"]] == [1, 2, 3]
  text = report.build(results=results, out=tmp_path / "R.md", figures=tmp_path / "fig")
  for e in part3["eval"]:
    assert (f"| {e['step']} | {e['reward_mean']:.3f} | {e['monitor_monitor_mean']:.3f} | "
            f"{e['kl']:.3f} |") in text
  assert "`regression_helpfulness`, seed 1" in text and (tmp_path / "fig" / "rlhf.png").exists()
  change = report._prompt_change([g for g in part3["generations"] if g["step"] == 0],
                                 [g for g in part3["generations"] if g["step"] == 3],
                                 "monitor_monitor")
  assert f"the monitor it never saw {change['text']} (**{change['verdict']}**)" in text


def test_part3_change_pairs_generations_by_prompt_and_names_what_moved():
  """Last evaluation minus first, per prompt: generations are matched by prompt (not by order),
  and the verdict follows the bootstrap interval over prompts."""
  prompts = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
  before = [{"prompt": p, "reward": float(i), "monitor_monitor": 0.1 * i}
            for i, p in enumerate(prompts)]
  rng = np.random.default_rng(0)
  noise = rng.normal(0, 0.3, 12)
  after = [{"prompt": p, "reward": float(i) + 1.0, "monitor_monitor": 0.1 * i + noise[i]}
           for i, p in enumerate(prompts)][::-1]  # another order
  up = report._prompt_change(before, after, "reward")
  assert up["n"] == 12 and up["mean"] == pytest.approx(1.0) and up["verdict"] == "higher"
  assert up["lo"] == pytest.approx(1.0) and up["hi"] == pytest.approx(1.0)
  flat = report._prompt_change(before, after, "monitor_monitor")
  assert flat["mean"] == pytest.approx(noise.mean())
  assert flat["lo"] < 0 < flat["hi"] and flat["verdict"] == "no measurable change"
  down = report._prompt_change(after, before, "reward")
  assert down["verdict"] == "lower"
  assert report._prompt_change(before, after, "missing_field") is None


def test_part3_config_reads_part2_export_and_the_shared_data_folder(tmp_path, monkeypatch):
  """rl_config.py as run.rlhf passes it to the RL trainer: the reward model and monitor are part
  2's exports, the prompt files lie in the shared data folder (a str setting, joined as a path)."""
  from projects.finetune_small.config import DATA, REPO, RLHF
  (tmp_path / "export_check.json").write_text(json.dumps(
      {"directory": "/models/best", "variant": "bt",
       "monitor": {"variant": "regression_helpfulness", "seed": 1, "directory": "/models/mon"}}))
  c = launch.load_config(f"{REPO}/projects/finetune_small/rl_config.py:{tmp_path}")
  from helpsteer_jax.training.configs import SHARED_DATA
  assert c.reward.source == "/models/best"
  assert dict(c.eval.monitors) == {"monitor": "/models/mon"}
  assert c.data.prompts.path == f"{SHARED_DATA}/{RLHF['prompts_file']}"
  assert c.eval.prompts.path == f"{SHARED_DATA}/{DATA['hs_file']}"
  assert (c.train.steps, c.rl.samples_per_prompt) == (RLHF["steps"], RLHF["k"])
  # The update scans the policy's layers with remat keeping the projections' outputs: unrolled
  # without remat it was OOM-killed at 19 GB on this 24 GB machine (experiments/reinforce.py).
  assert (c.policy.scan_layers, c.policy.remat_policy) == (True, "projections")


@pytest.mark.parametrize("loss,kind", [("scaled_bt", "pairs"), ("regression", "ratings")])
def test_train_top_micro_batches_give_the_whole_batch_update(tmp_path, loss, kind):
  """grad_accum splits each batch (the last one part filler) into micro-batches that fit in
  memory; the trained top must be the whole-batch one (float32, 1e-5)."""
  import jax  # pylint: disable=g-import-not-at-top
  import ml_collections
  from helpsteer_jax.training.model_setup import fresh_head
  from projects.finetune_small import frozen
  _, _, _, (bcfg, tcfg, bottom, top) = _tiny_split(tmp_path)
  rng = np.random.default_rng(2)
  seqs = [rng.integers(1, 64, int(n)).astype(np.int32) for n in rng.integers(5, 60, 20)]
  hidden = frozen.HiddenCache(tmp_path / "h", bcfg, bottom, batch_size=8)(seqs, log=None)
  if kind == "pairs":  # 10 pairs with unequal strengths: batches of 4, 4 and 2 + filler
    data = frozen.PairData(np.arange(0, 20, 2), np.arange(1, 20, 2),
                           rng.uniform(0.5, 3.0, 10).astype(np.float32))
  else:  # 20 rated responses, 5 attributes, some labels missing
    data = frozen.RatingData(np.arange(20), rng.uniform(0, 4, (20, 5)).astype(np.float32),
                             (rng.uniform(size=(20, 5)) > 0.2).astype(np.float32))
    top = dict(top, score=fresh_head(rng, tcfg.hidden_size, 5))
  optim = ml_collections.ConfigDict(dict(lr=1e-3, b1=0.9, b2=0.98, eps=1e-8, weight_decay=0.1,
                                         warmup_steps=1, schedule="constant", decay_steps=0,
                                         final_lr=0.0, grad_clip=1.0))
  got = {}
  for accum in (1, 2):
    trained, curve = frozen.train_top(tcfg, top, loss, hidden, data, optim, epochs=2,
                                      batch_size=4, seed=0, grad_accum=accum, log=None,
                                      attributes=("helpfulness", "correctness", "coherence",
                                                  "complexity", "verbosity"))
    got[accum] = (trained, [c["loss"] for c in curve])
  np.testing.assert_allclose(got[2][1], got[1][1], rtol=1e-5, atol=1e-6)
  for a, b in zip(jax.tree_util.tree_leaves(got[2][0]), jax.tree_util.tree_leaves(got[1][0])):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="does not split into 3 micro-batches"):  # it is used
    frozen.train_top(tcfg, top, loss, hidden, data, optim, epochs=1, batch_size=4, seed=0,
                     grad_accum=3, log=None)


class _StubStudy:
  """variants.Study's interface without a model: a top is {"w": value}; training adds the seed
  and the loss's rank to where it starts; evaluation reads w."""

  def __init__(self, workdir):
    self.workdir, self.trained, self.log = workdir / "part2", [], lambda msg: None

  def fresh_top(self, seed, num_labels):
    return {"w": np.float32(0.0)}

  def train(self, loss, kind, top, lr, epochs, seed):
    self.trained.append((loss, seed))
    return {"w": np.float32(top["w"] + 1 + seed)}, [{"epoch": 0, "loss": 0.5, "seconds": 1.0}]

  def evaluate(self, top, sets=("hs_dev",)):
    return {name: {"accuracy": float(top["w"]), "log_loss": -float(top["w"]), "correct": [1]}
            for name in sets}


def test_part2_skips_committed_results_and_retrains_only_the_tops_a_later_stage_needs(tmp_path):
  """A later session has the committed result files but not the workdir: finished variants are
  not trained again; Scaled BT from regression and ExPO train again exactly the tops they need,
  the start first."""
  from projects.finetune_small import variants
  from projects.finetune_small.config import EXPO
  lrs = {"bt": 1e-4, "regression_helpfulness": 3e-5}
  results = tmp_path / "results"
  study = _StubStudy(tmp_path)
  variants.train_variant(study, results, lrs, "scaled_bt_from_regression", 1)
  assert study.trained == [("regression_helpfulness", 1), ("scaled_bt", 1)]  # start, then it
  first = json.loads((results / "scaled_bt_from_regression_seed1.json").read_text())
  assert first["init"] == "regression_helpfulness" and first["lr"] == 1e-4
  assert first["metrics"]["hs_dev"]["accuracy"] == 4.0  # 0 + 2 (regression) + 2 (scaled BT)
  later = _StubStudy(tmp_path / "later")  # a new workdir: no tops, the same results folder
  variants.train_variant(later, results, lrs, "scaled_bt_from_regression", 1)
  assert later.trained == []
  variants.expo(later, results, lrs, (1,))
  assert later.trained == [("regression_helpfulness", 1), ("scaled_bt", 1)]
  chosen = json.loads((results / f"{EXPO['name']}_seed1.json").read_text())
  # w(alpha) = aligned + alpha (aligned - init) = 4 + 2 alpha: the largest alpha of the grid.
  assert chosen["alpha"] == max(EXPO["alphas"])
  assert chosen["metrics"]["hs_dev"]["accuracy"] == 4.0 + 2 * max(EXPO["alphas"])
  again = variants.top_of(_StubStudy(tmp_path / "third"), results, lrs, EXPO["name"], 1)
  assert float(again["w"]) == 4.0 + 2 * max(EXPO["alphas"])


def test_pair_log_loss_is_the_bt_negative_log_likelihood():
  from projects.finetune_small.variants import pair_log_loss
  chosen, rejected = np.array([2.0, 0.0, -1.0]), np.array([0.0, 0.0, 3.0])
  # -log sigmoid(d) for d = 2, 0, -4, by hand: log(1 + e^-2), log 2, log(1 + e^4).
  want = np.mean([np.log1p(np.exp(-2.0)), np.log(2.0), np.log1p(np.exp(4.0))])
  assert pair_log_loss(chosen, rejected) == pytest.approx(want, rel=1e-12)
  assert pair_log_loss(np.array([800.0]), np.array([0.0])) == 0.0  # no overflow
  assert pair_log_loss(np.array([0.0]), np.array([800.0])) == pytest.approx(800.0)


class _SweepStub(_StubStudy):
  """A top is {"w": index of its learning rate in the grid}; dev accuracy and log-loss by index:
  the first and last rates tie in accuracy, the last has the lower log-loss."""
  ACCURACY, LOG_LOSS = (0.684, 0.632, 0.684), (0.69, 0.62, 0.55)

  def train(self, loss, kind, top, lr, epochs, seed):
    from projects.finetune_small.config import FROZEN
    self.trained.append((loss, lr))
    return {"w": np.float32(FROZEN["lr_grid"].index(lr))}, [{"epoch": 0, "loss": 0.5}]

  def evaluate(self, top, sets=("hs_dev",)):
    i = int(top["w"])
    return {n: {"accuracy": self.ACCURACY[i], "log_loss": self.LOG_LOSS[i]} for n in sets}


def test_sweep_breaks_accuracy_ties_by_dev_log_loss_and_fills_old_records_from_kept_tops(
    tmp_path):
  """An accuracy tie goes to the rate with the lower dev log-loss (not the smaller rate, the
  first sweep's rule); records written before the log-loss existed get it from their kept tops
  without training; a family with nothing recorded is trained."""
  from projects.finetune_small import variants
  from projects.finetune_small.config import FROZEN
  grid = FROZEN["lr_grid"]
  study, results = _SweepStub(tmp_path), tmp_path / "results"
  results.mkdir()
  old = [{"family": "bt", "lr": lr, "dev_accuracy": _SweepStub.ACCURACY[i], "final_loss": 0.5,
          "seconds": 1} for i, lr in enumerate(grid)]
  (results / "sweep.json").write_text(json.dumps({"runs": old, "chosen": {"bt": grid[0]}}))
  for i, lr in enumerate(grid):
    variants.save_top(variants._sweep_top(study, "bt", lr), {"w": np.float32(i)}, {})
  chosen = variants.sweep(study, results)
  assert study.trained == [("regression_helpfulness", lr) for lr in grid]  # bt: none
  assert chosen == {"bt": grid[-1], "regression_helpfulness": grid[-1]}
  done = json.loads((results / "sweep.json").read_text())
  assert len(done["runs"]) == 2 * len(grid)
  assert [r["dev_log_loss"] for r in done["runs"] if r["family"] == "bt"] == list(
      _SweepStub.LOG_LOSS)
  again = _SweepStub(tmp_path)  # everything recorded: nothing trained or evaluated again
  assert variants.sweep(again, results) == chosen and again.trained == []


def test_a_kept_top_trained_at_another_rate_is_trained_again(tmp_path):
  """A top in the workdir from before the learning rate changed is not reused."""
  from projects.finetune_small import variants
  study, results = _StubStudy(tmp_path), tmp_path / "results"
  path = variants._top_path(study, "scaled_bt", 1)
  meta = {"loss": "scaled_bt", "init": None, "epochs": 1, "train_seconds": 1.0, "curve": []}
  variants.save_top(path, {"w": np.float32(7.0)}, dict(meta, lr=1e-5))
  top = variants.ensure_top(study, results, {"bt": 1e-4}, "scaled_bt", 1)
  assert study.trained == [("scaled_bt", 1)] and float(top["w"]) == 2.0
  assert json.loads(path.with_suffix(".json").read_text())["lr"] == 1e-4
  same = _StubStudy(tmp_path)  # now at the study's rate: reused
  assert float(variants.ensure_top(same, results, {"bt": 1e-4}, "scaled_bt", 1)["w"]) == 2.0
  assert same.trained == []


def _part2_metrics(rng, subsets, p):
  from helpsteer_jax.evaluation import rewardbench  # pylint: disable=g-import-not-at-top
  out = {}
  for name, n in (("hs_dev", 19), ("hs_validation", 50), ("mix_validation", 30)):
    c = [int(x) for x in rng.random(n) < p]
    out[name] = {"accuracy": float(np.mean(c)), "log_loss": 0.6, "correct": c}
  c = [int(x) for x in rng.random(len(subsets)) < p]
  s = rewardbench.summarize_correct(subsets, c)
  out["rewardbench"] = {"accuracy": float(np.mean(c)), "correct": c, "sections": s["sections"],
                        "mean": s["mean_of_present_sections"]}
  return out


def test_part2_report_compares_with_the_probe_on_the_rows_the_probe_scored(tmp_path,
                                                                          monkeypatch):
  """Part 2's result files (variants' shape: RewardBench subsets live in sets.json) against the
  probe on the RewardBench rows the probe scored; the superseded result is cited from its file."""
  from helpsteer_jax.evaluation import compare, rewardbench
  rng = np.random.default_rng(3)
  subsets = ["alpacaeval-easy"] * 30 + ["mt-bench-hard"] * 10
  keep = [True] * 39 + [False]
  (tmp_path / "part2" / "superseded").mkdir(parents=True)
  (tmp_path / "rewardbench_probe_rows.json").write_text(json.dumps({"scored_by_probe": keep}))
  (tmp_path / "part2" / "sets.json").write_text(json.dumps(
      {"rb_subsets": subsets, "sizes": {}, "bottom_seconds": {"helpsteer": 1200, "mix": 600}}))
  (tmp_path / "part2" / "sweep.json").write_text(json.dumps(
      {"runs": [{"family": "bt", "lr": 1e-4, "dev_accuracy": 0.7, "dev_log_loss": 0.6,
                 "seconds": 600}], "chosen": {"bt": 1e-4}}))
  (tmp_path / "part2" / "pauses.jsonl").write_text(json.dumps(
      {"stopped": 0, "continued": 60, "seconds": 60, "why": "a benchmark",
       "during": "bt seed 1 training"}) + "\n" + json.dumps(
      {"stopped": 100, "continued": 130, "seconds": 30, "why": "a benchmark",
       "during": "mix bottom cache"}) + "\n")
  (tmp_path / "part2" / "export_check.json").write_text(json.dumps(
      {"variant": "bt", "seed": 0, "pairs": 50, "tolerance": 1e-4,
       "library_evaluator_max_abs_diff": 1e-7, "transformers": {"skipped": "no torch"}}))
  ours = []
  for seed in (0, 1):
    m = _part2_metrics(rng, subsets, 0.8)
    ours.append(m)
    (tmp_path / "part2" / f"bt_seed{seed}.json").write_text(json.dumps(
        {"variant": "bt", "seed": seed, "lr": 1e-4, "train_seconds": 60.0 * (1 + seed),
         "from_sweep": seed == 0, "eval_seconds": 60.0, "top_layers": 4,
         "curve": [{"loss": 0.5}], "metrics": m,
         **({"evaluated_on": "CPU B", "trained_on": "CPU B"} if seed else {})}))
  old = {"variant": "bt", "seed": 0, "lr": 1e-5, "curve": [{"loss": 0.7}, {"loss": 0.6}],
         "metrics": _part2_metrics(rng, subsets, 0.5)}
  (tmp_path / "part2" / "superseded" / "bt_seed0_lr1e-05.json").write_text(json.dumps(old))
  probe = []
  for seed in (0, 1):
    m = _part2_metrics(rng, [s for s, k in zip(subsets, keep) if k], 0.6)
    probe.append({"seed": seed, "hs_validation": m["hs_validation"],
                  "mix_validation": m["mix_validation"], "rewardbench": m["rewardbench"]})
  monkeypatch.setattr(report, "load_probe_variant",
                      lambda name, directory=None: probe if name == "bt" else [])
  text = report.build(results=tmp_path, out=tmp_path / "REPORT.md", figures=tmp_path / "fig")
  kept = [s for s, k in zip(subsets, keep) if k]
  restricted = [rewardbench.summarize_correct(
      kept, [c for c, k in zip(m["rewardbench"]["correct"], keep) if k])
      ["mean_of_present_sections"] for m in ours]
  diff, noise, _ = compare.seed_difference(restricted, [m["rewardbench"]["mean"] for m in probe])
  assert f"{diff * 100:+.1f} (seeds {noise * 100:.1f}" in text
  o = old["metrics"]
  assert (f"scored {o['hs_validation']['accuracy'] * 100:.1f} on the held-out HelpSteer pairs"
          in text) and "(mean step loss 0.650" in text
  # Two pauses, 1.5 min; the cache's is counted, not taken out of a result's time.
  assert "(1 of them fell in a later session's recomputation of the bottom's cache" in text
  # Time: bottom 30 min, sweep 10, training 1 (seed 1's 2 less its 1-minute pause; seed 0 was
  # the sweep's run), evaluation 2.
  assert ("0.72 h: the bottom's cached output 30 min, the sweep 10 min, training 1 min, "
          "evaluation 2 min.") in text
  assert "and 2 pause(s) of the part 2 process (2 min in all" in text
  # Part 2's processor from its own result files (not part 1's), and which files lack one.
  assert ("Processor: `CPU B` (1 of 2 result files were written before part 2 recorded its "
          "processor).") in text
  assert "--only bt --seed 0 --workdir W\n    # part 2's exported model from scratch: about " \
         "32 min here (bottom 30, training 1, evaluation 1)" in text


def test_retrained_tops_are_compared_with_the_committed_runs(tmp_path):
  """A later session that lost the workdir trains tops again (ExPO and the export need them):
  their loss curves are compared with the committed result files', step by step; a top taken
  from the sweep, or the committed run's own top, is not a retraining."""
  from projects.finetune_small import variants
  tops, results = tmp_path / "w" / "part2" / "tops", tmp_path / "results"
  tops.mkdir(parents=True)
  results.mkdir()
  curve = [{"epoch": 0, "loss": 0.7}, {"epoch": 0, "loss": 0.6}]
  committed = {"variant": "bt", "seed": 1, "curve": curve, "train_seconds": 100.0,
               "metrics": {}}
  for name in ("bt", "scaled_bt", "regression_helpfulness"):
    (results / f"{name}_seed1.json").write_text(json.dumps(dict(committed, variant=name)))
  (tops / "bt_seed1.json").write_text(json.dumps(
      {"curve": curve, "train_seconds": 60.0, "from_sweep": False, "trained_on": "CPU B"}))
  (tops / "scaled_bt_seed1.json").write_text(json.dumps(
      {"curve": [{"loss": 0.7}, {"loss": 0.65}], "train_seconds": 60.0, "from_sweep": False,
       "trained_on": "CPU B"}))
  (tops / "regression_helpfulness_seed1.json").write_text(json.dumps(
      {"curve": curve, "train_seconds": 1.0, "from_sweep": True}))
  variants.record_retrained(tmp_path / "w", results)
  rows = json.loads((results / "reproduced.json").read_text())
  assert [(r["variant"], r["bitwise_equal"]) for r in rows] == [("bt", True),
                                                               ("scaled_bt", False)]
  assert rows[1]["max_abs_loss_difference"] == pytest.approx(0.05)
  assert rows[0]["committed_trained_on"] == "not recorded" and rows[0]["retrained_on"] == "CPU B"
