"""The trainer end to end on `:tiny` configs (SmolLM2 tokenizer, the HelpSteer rows shipped in the
package: these run on a fresh clone with nothing beside it).

Tolerances: the 2x2x2-mesh loss equals the 1-device loss within 1e-5 per step; resumed runs
end with parameters bitwise equal to an uninterrupted run (CPU); a workdir loaded scanned vs
unscanned gives rewards within 1e-6 (XLA fuses the two layouts differently); several steps per
jitted call give the per-step losses and final parameters of one step per call within 1e-6
(equal bitwise on this CPU when written).
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from helpsteer_jax.train import train
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]


def load_config_file(name: str, arg: str = "tiny"):
  return launch.load_config(f"{REPO}/experiments/{name}.py:{arg}")


@pytest.fixture(autouse=True)
def _need_tokenizer(smollm2_tokenizer):
  del smollm2_tokenizer


def _final_params(workdir):
  from helpsteer_jax.training.checkpoint import restore_params
  return restore_params(workdir)


# One of the five in the default run (the paper's loss); the rest with -m slow.
@pytest.mark.parametrize("name,arg", [
    pytest.param("bt", "tiny", marks=pytest.mark.slow),
    pytest.param("margin_bt", "tiny", marks=pytest.mark.slow), ("scaled_bt", "tiny"),
    pytest.param("regression", "tiny", marks=pytest.mark.slow),
    pytest.param("regression", "tiny,helpfulness", marks=pytest.mark.slow)])
def test_every_config_runs_two_steps(name, arg, tmp_path):
  c = load_config_file(name, arg)
  c.train.steps = 2
  out = train(c, str(tmp_path))
  assert out["step"] == 2
  assert np.isfinite(out["eval_after"]["loss"]) and 0 <= out["eval_after"]["accuracy"] <= 1
  assert (tmp_path / "checkpoints").is_dir() and (tmp_path / "config.json").exists()
  assert any((tmp_path / "tensorboard").iterdir())
  # The summary's throughput is the whole run's (it once read the meter after the last logged
  # step had reset it: 0 tokens/s and a padding share of 1).
  tp = out["throughput"]
  assert tp["tokens_per_s"] > 0 and 0 <= tp["padding_share"] < 1 and tp["seconds"] > 0
  if name == "regression":  # held-out per-attribute MSE beside helpfulness-implied accuracy
    attrs = c.data.attributes
    assert all(np.isfinite(out["eval_after"][f"ratings_mse_{a}"]) for a in attrs)


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_packed_training_runs(tmp_path):
  c = load_config_file("scaled_bt", "tiny")
  c.data.packing, c.train.steps = True, 3  # 8 rows per step, over the 8 fake devices
  out = train(c, str(tmp_path))
  assert out["step"] == 3 and np.isfinite(out["eval_after"]["loss"])
  with pytest.raises(ValueError, match="DPO batches are not packed"):
    d = load_config_file("dpo", "tiny")
    d.data.packing = True
    train(d, str(tmp_path / "dpo"))


@pytest.mark.slow  # out of the default 6-minute run (test_init_from_head.py covers it there)
def test_stage_two_starts_from_regression_helpfulness_output(tmp_path):
  c1 = load_config_file("regression", "tiny")
  c1.train.steps = 2
  train(c1, str(tmp_path / "stage1"))
  stage1 = _final_params(tmp_path / "stage1")
  c2 = load_config_file("scaled_bt_from_regression", "tiny")
  with pytest.raises(ValueError, match="init_from"):
    train(c2, str(tmp_path / "no_init"))
  c2.init_from = str(tmp_path / "stage1")
  c2.optim.lr = 0.0  # no update: the reward must be stage 1's helpfulness output exactly
  out = train(c2, str(tmp_path / "stage2"))
  stage2 = _final_params(tmp_path / "stage2")
  np.testing.assert_array_equal(stage2["score"]["kernel"], stage1["score"]["kernel"][:, :1])
  np.testing.assert_array_equal(stage2["model"]["norm"]["weight"],
                                stage1["model"]["norm"]["weight"])
  assert out["step"] == 4


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_workdir_is_a_model_source_in_either_layer_layout(tmp_path):
  from helpsteer_jax.models import LlamaRewardModel
  from helpsteer_jax.runs import load_config, load_model
  c = load_config_file("regression", "tiny")
  c.train.steps = 1
  c.model.scan_layers = True
  train(c, str(tmp_path))
  saved = _final_params(tmp_path)
  scanned = load_model(str(tmp_path))
  flat = load_model(str(tmp_path), scan_layers=False, tokenizer=False)
  assert scanned.num_labels == flat.num_labels == 5 and scanned.config.scan_layers
  assert load_config(str(tmp_path)) == (scanned.config, 5)
  np.testing.assert_array_equal(scanned.params["score"]["kernel"], saved["score"]["kernel"])
  ids = np.asarray(scanned.tokenizer("Hello there, reward model.")["input_ids"])[None]
  r_scan = LlamaRewardModel(scanned.config, 5).apply({"params": scanned.params}, ids)
  r_flat = LlamaRewardModel(flat.config, 5).apply({"params": flat.params}, ids)
  # Same numbers in both layouts; scan vs unrolled layers fuse differently in XLA, so the
  # rewards may differ in the last float32 bits (tolerance 1e-6 absolute on |r| ~ 0.2).
  np.testing.assert_array_equal(flat.params["model"]["layers"]["1"]["mlp"]["up_proj"]["kernel"],
                                saved["model"]["layers"]["mlp"]["up_proj"]["kernel"][1])
  np.testing.assert_allclose(np.asarray(r_scan), np.asarray(r_flat), rtol=0, atol=1e-6)


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_non_finite_step_stops_training_and_is_never_saved(tmp_path):
  from helpsteer_jax.train import NonFiniteError
  c = load_config_file("bt", "tiny")
  c.optim.lr = float("nan")  # finite loss and gradients, NaN update at the first step
  c.train.checkpoint_every = 1
  with pytest.raises(NonFiniteError, match="at step 0"):
    train(c, str(tmp_path))
  saved = [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved == []


def test_mistyped_config_key_is_an_error(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "helpsteer_jax.train", "--config",
                         "experiments/bt.py:tiny", "--workdir", str(tmp_path),
                         "--config.train.stepz=3"], cwd=REPO, env=_env(), capture_output=True)
  assert proc.returncode != 0
  assert b"stepz" in proc.stderr
  assert not (tmp_path / "checkpoints").exists()


def test_steps_per_call_gives_the_same_run(tmp_path):
  """train.steps_per_call=3 over 7 steps with a checkpoint at 4: steps 1-3 in one call, 4-7 one
  at a time (a checkpoint inside the next three, then too few left); same losses, same model."""
  losses, params = {}, {}
  for k in (1, 3):
    c = load_config_file("bt", "tiny")
    c.train.update(steps=7, log_every=1, checkpoint_every=4, steps_per_call=k)
    c.data.packing = True  # rows of one length: a call's batches must share a shape
    out = train(c, str(tmp_path / str(k)))
    assert out["step"] == 7 and out["multi_step_calls"] == (1 if k == 3 else 0)
    rows = [json.loads(l) for l in (tmp_path / str(k) / "metrics.jsonl").read_text().splitlines()]
    losses[k] = [r["train/loss"] for r in rows if "train/loss" in r]
    assert [r["step"] for r in rows if "train/loss" in r] == list(range(1, 8))
    assert all(np.isfinite(r["train/tokens_per_s"]) and r["train/tokens_per_s"] > 0
               for r in rows if "train/loss" in r)
    params[k] = _final_params(tmp_path / str(k))
  np.testing.assert_allclose(losses[3], losses[1], atol=1e-6, rtol=0)
  for a, b in zip(jax.tree_util.tree_leaves(params[3]), jax.tree_util.tree_leaves(params[1])):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  steps = sorted(int(p.name) for p in (tmp_path / "3" / "checkpoints").iterdir() if p.name.isdigit())
  assert 4 in steps and 7 in steps  # the checkpoint the grouping had to respect, and the last


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
def test_mesh_2x2x2_equals_one_device(tmp_path):
  assert jax.device_count() == 8
  losses = {}
  for name, mesh in (("one", dict(data=1, fsdp=1, tensor=1)),
                     ("mesh", dict(data=2, fsdp=2, tensor=2))):
    c = load_config_file("scaled_bt", "tiny")
    c.train.steps = 5
    c.train.log_every = 1
    c.data.batch_size = 4
    c.mesh.update(mesh)
    train(c, str(tmp_path / name))
    losses[name] = [json.loads(l)["train/loss"] for l in
                    (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                    if "train/loss" in json.loads(l)]
  assert len(losses["one"]) == 5
  np.testing.assert_allclose(losses["mesh"], losses["one"], atol=1e-5, rtol=0)


def _cmd(workdir, steps, extra=()):
  return [sys.executable, "-m", "helpsteer_jax.train", "--config", "experiments/bt.py:tiny",
          "--workdir", str(workdir), f"--config.train.steps={steps}",
          "--config.train.checkpoint_every=2", "--config.train.record_batches=True",
          "--config.data.max_train_examples=40", *extra]


def _env():
  env = dict(os.environ)
  env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=1"
  env["HF_HUB_OFFLINE"] = "1"
  return env


def _batch_log(workdir):
  return [json.loads(l) for l in (Path(workdir) / "batches.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_run_resumes_exactly(sig, tmp_path):
  steps = 12
  ref = tmp_path / "ref"
  subprocess.run(_cmd(ref, steps), cwd=REPO, env=_env(), check=True, capture_output=True)
  run = tmp_path / "run"
  proc = subprocess.Popen(_cmd(run, steps), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  ckpts = run / "checkpoints"
  deadline = time.time() + 300
  while time.time() < deadline:  # wait for a first checkpoint, then interrupt mid-run
    if ckpts.is_dir() and any(p.name.isdigit() and int(p.name) >= 4 for p in ckpts.iterdir()):
      break
    time.sleep(0.2)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  if sig == signal.SIGTERM:
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"SIGTERM: saved step" in err
  interrupted_at = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
  assert interrupted_at < steps
  subprocess.run(_cmd(run, steps), cwd=REPO, env=_env(), check=True, capture_output=True)
  a, b = _final_params(ref), _final_params(run)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)
  # Every step saw the same batch as the uninterrupted run: none repeated, none skipped.
  ref_log = {r["step"]: r["sha"] for r in _batch_log(ref)}
  run_log: dict[int, str] = {}
  for r in _batch_log(run):
    run_log[r["step"]] = r["sha"]  # a step redone after SIGKILL overwrites its first record
  assert run_log == ref_log and sorted(ref_log) == list(range(1, steps + 1))


def _two_processes(cmd) -> list[bytes]:
  """Runs `cmd` as 2 jax.distributed processes on localhost, 1 CPU device each; their stderr."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  procs = []
  for i in range(2):
    env = dict(_env(), JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
               JAX_PROCESS_ID=str(i))
    procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE))
  errs = []
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err.decode()[-3000:]
    errs.append(err)
  return errs


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path):
  """jax.distributed on localhost: 2 processes x 1 CPU device == 1 process x 2 devices.

  Then stage 2 (`init_from`) on the two processes: each reads its shards of the stage-1
  parameters; with LR 0 it ends with them exactly.
  """
  args = ["--config.train.steps=3", "--config.mesh.data=2", "--config.train.checkpoint_every=0"]
  single = dict(_env(), XLA_FLAGS="--xla_force_host_platform_device_count=2")
  subprocess.run(_cmd(tmp_path / "one", 3, args), cwd=REPO, env=single, check=True,
                 capture_output=True)
  _two_processes(_cmd(tmp_path / "two", 3, args))
  loss = lambda d: [json.loads(l)["train/loss"] for l in
                    (d / "metrics.jsonl").read_text().splitlines() if "train/loss" in l]
  np.testing.assert_allclose(loss(tmp_path / "two"), loss(tmp_path / "one"), atol=1e-5, rtol=0)
  a, b = _final_params(tmp_path / "one"), _final_params(tmp_path / "two")
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(x, y, atol=1e-6, rtol=0)
  errs = _two_processes(_cmd(tmp_path / "stage2", 3, [
      *args, f"--config.init_from={tmp_path / 'two'}", "--config.optim.lr=0.0"]))
  assert b"initialised from" in errs[0]
  c = _final_params(tmp_path / "stage2")
  assert jax.tree_util.tree_structure(c) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(c), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_rlhf_on_two_processes_agrees_with_one_and_one_host_logs(tmp_path):
  """The RLHF trainer under jax.distributed: same metrics as 1 process x 2 devices; only
  process 0 writes metrics.jsonl, TensorBoard and progress lines."""
  cmd = lambda w: [sys.executable, "-m", "helpsteer_jax.rlhf.train", "--config",
                   "experiments/reinforce.py:tiny", "--workdir", str(w), "--config.mesh.data=2"]
  single = dict(_env(), XLA_FLAGS="--xla_force_host_platform_device_count=2")
  subprocess.run(cmd(tmp_path / "one"), cwd=REPO, env=single, check=True, capture_output=True)
  errs = _two_processes(cmd(tmp_path / "two"))
  rows = {d: [json.loads(l) for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
          for d in ("one", "two")}
  assert [r["step"] for r in rows["two"]] == [1, 2]  # one writer: no row twice
  bar = b"rlhf: 100%"  # the progress bar's last line (stderr is no terminal: a line per refresh)
  assert bar in errs[0] and bar not in errs[1]
  assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1
  timing = ("_per_s", "step_seconds", "time", "mfu")  # wall clock and what is divided by it
  for r1, r2 in zip(rows["one"], rows["two"]):
    assert r1.keys() == r2.keys()
    for k in r1:
      if not k.endswith(timing):
        np.testing.assert_allclose(r2[k], r1[k], atol=1e-5, rtol=0, err_msg=k)
  assert (tmp_path / "two" / "checkpoints" / "2").is_dir()


def test_throughput_meter_reads_intervals_and_totals():
  from helpsteer_jax.models import LlamaConfig  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.training import metrics_log  # pylint: disable=g-import-not-at-top
  meter = metrics_log.Throughput(LlamaConfig(), peak_flops=0, num_devices=1)
  half = np.concatenate([np.ones((1, 8)), np.zeros((1, 8))], axis=1)
  meter.add({"attention_mask": half})
  first = meter.read()
  assert first["tokens_per_s"] > 0 and first["padding_share"] == 0.5
  empty = meter.read()  # nothing since: no tokens, and no padding share to speak of
  assert empty["tokens_per_s"] == 0 and np.isnan(empty["padding_share"])
  meter.add({"attention_mask": np.ones((1, 16))})
  meter.read()
  total = meter.total()  # both batches, whatever the reads in between
  assert total["padding_share"] == pytest.approx(8 / 32)
  assert total["tokens_per_s"] == pytest.approx(24 / total["seconds"], rel=1e-3)
