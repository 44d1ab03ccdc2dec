"""Metric writers (metrics.jsonl, TensorBoard, W&B offline) and the progress bar, through both
trainers on `:tiny` configs.

W&B runs offline (no account, no network): its run folder's `run-<id>.wandb` is read back with
W&B's own record protobuf, so the test sees what `wandb sync` would upload.
"""
import io
import json
import sys
from pathlib import Path

import pytest
from etils import epath

from helpsteer_jax.training import launch, metric_writers, metrics_log

REPO = Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str = "tiny"):
  return launch.load_config(f"{REPO}/experiments/{name}.py:{arg}")


def wandb_records(run_dir: Path):
  """The records of an offline run's .wandb file, in order: W&B's 7-byte header (":W&B", magic,
  version), then LevelDB's log format: 32 KiB blocks of chunks, each crc32c (4 bytes), length
  (2, little-endian), type (1: whole, 2/3/4: first/middle/last part) and data; a block's last
  < 7 bytes are padding. Each reassembled record is a wandb_internal_pb2.Record."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=g-import-not-at-top
  (path,) = run_dir.glob("run-*.wandb")
  data = path.read_bytes()
  assert data[:4] == b":W&B"
  pos, block, buf = 7, 32768, b""
  while pos + 7 <= len(data):
    if block - pos % block < 7:
      pos += block - pos % block
      continue
    length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
    buf += data[pos + 7:pos + 7 + length]
    pos += 7 + length
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(buf)
      buf = b""
      yield record


def wandb_history(run_dir: Path) -> dict[int, dict[str, float]]:
  """{step: {key: value}} of an offline run's history records."""
  history: dict[int, dict[str, float]] = {}
  for record in wandb_records(run_dir):
    if record.WhichOneof("record_type") == "history":
      row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json)
             for i in record.history.item}
      history[record.history.step.num] = {k: v for k, v in row.items() if not k.startswith("_")}
  return history


def jsonl_by_step(workdir: Path) -> dict[int, dict[str, float]]:
  """metrics.jsonl's rows merged by step (train/ and eval/ rows of a step are separate rows)."""
  out: dict[int, dict[str, float]] = {}
  for line in (workdir / "metrics.jsonl").read_text().splitlines():
    row = json.loads(line)
    out.setdefault(row.pop("step"), {}).update({k: v for k, v in row.items() if k != "time"})
  return out


def test_unknown_tracker_is_an_error_naming_the_valid_ones(tmp_path):
  with pytest.raises(ValueError, match=r"'mlflow'.*\['tensorboard', 'wandb'\]"):
    metric_writers.parse_trackers("tensorboard, mlflow")
  assert metric_writers.parse_trackers(" wandb,tensorboard,wandb ") == ("wandb", "tensorboard")
  assert metric_writers.parse_trackers("") == ()
  from helpsteer_jax.train import train  # pylint: disable=g-import-not-at-top
  c = load_config("scaled_bt")
  c.train.trackers = "tensorbord"
  with pytest.raises(ValueError, match="unknown tracker 'tensorbord'"):
    train(c, str(tmp_path))  # before the model or the data load


def test_missing_wandb_names_the_install(monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
  with pytest.raises(ImportError, match="pip install wandb"):
    metric_writers.open_writers(tmp_path, "wandb")
  from helpsteer_jax.train import train  # pylint: disable=g-import-not-at-top
  c = load_config("scaled_bt")
  c.train.trackers = "tensorboard,wandb"
  with pytest.raises(ImportError, match="pip install wandb"):
    train(c, str(tmp_path / "run"))


def test_wandb_mode_is_offline_without_an_api_key(monkeypatch):
  monkeypatch.delenv("WANDB_MODE", raising=False)
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  assert metric_writers.wandb_mode("") == "offline"
  monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
  assert metric_writers.wandb_mode("") == "online"
  monkeypatch.setenv("WANDB_MODE", "disabled")
  assert metric_writers.wandb_mode("") == "disabled"
  assert metric_writers.wandb_mode("offline") == "offline"  # the config wins
  with pytest.raises(ValueError, match="online"):
    metric_writers.wandb_mode("offlien")


def test_progress_bar_in_a_log_file_is_whole_lines():
  log = io.StringIO()  # not a terminal: one line per refresh, no carriage returns
  bar = metrics_log.progress_bar(total=4, initial=1, desc="train", stream=log)
  for step in (2, 3, 4):
    bar.set_postfix_str(f"loss={1 / step:.4g} mfu=0.25", refresh=False)
    bar.update()
  bar.close()
  lines = log.getvalue().splitlines()
  assert "\r" not in log.getvalue() and len(lines) >= 2
  assert lines[0].startswith("train:") and "1/4" in lines[0]
  assert "4/4" in lines[-1] and "loss=0.25 mfu=0.25" in lines[-1], lines


def test_disabled_logger_writes_nothing(tmp_path, capsys):
  log = metrics_log.Logger(tmp_path / "run", enabled=False, trackers="tensorboard,wandb")
  log.text("hello")
  log.start_progress(3, 0, ("loss",))
  log.scalars(1, {"loss": 0.5})
  log.progress(1, {"loss": 0.5})
  log.close()
  assert not (tmp_path / "run").exists()
  assert capsys.readouterr().err == ""


def test_crashed_run_is_marked_failed_in_wandb(tmp_path, monkeypatch):
  """The trainers' loop context closes W&B with exit code 1 when its body raises (a crash, ^C),
  0 when it returns; before, every run was closed as finished."""
  wandb = pytest.importorskip("wandb")
  from helpsteer_jax.training import trainer
  monkeypatch.delenv("WANDB_API_KEY", raising=False)
  c = load_config("scaled_bt")
  c.train.trackers = "wandb"
  exit_codes = {}
  for name, fail in (("ok", False), ("crash", True)):
    (tmp_path / name).mkdir()
    run = trainer.Run(config=c, workdir=epath.Path(tmp_path / name), is_main=True,
                      mesh=trainer.make_mesh({"data": 1}), rules=())
    run.log.text("started")  # opens the W&B run, as a trainer's first message does
    try:
      with run.loop():
        run.log.scalars(1, {"loss": 1.0})
        if fail:
          raise RuntimeError("boom")
    except RuntimeError:
      pass
    wandb.teardown()  # the service process writes the run's last records; wait for them
    (folder,) = (tmp_path / name / "wandb").glob("offline-run-*")
    (exit_codes[name],) = [r.exit.exit_code for r in wandb_records(folder)
                           if r.WhichOneof("record_type") == "exit"]
  assert exit_codes == {"ok": 0, "crash": 1}


def test_reward_model_run_logs_to_tensorboard_and_wandb_and_resumes_the_run(
    tmp_path, monkeypatch, capsys, smollm2_tokenizer):
  """Both trackers; the W&B run folder (default: under the workdir) holds metrics.jsonl's every
  train/ and eval/ value at its step, and a resumed training continues the same W&B run."""
  del smollm2_tokenizer
  pytest.importorskip("wandb")
  from helpsteer_jax.train import train  # pylint: disable=g-import-not-at-top
  for var in ("WANDB_DIR", "WANDB_API_KEY", "WANDB_MODE"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("WANDB_SILENT", "true")
  work = tmp_path / "run"
  for steps in (2, 4):  # the second call resumes the first's checkpoint at step 2
    c = load_config("scaled_bt")
    c.train.update(steps=steps, trackers="tensorboard,wandb", log_every=1)
    c.train.wandb.name = "tiny-sbt"
    train(c, str(work))
  err = capsys.readouterr().err
  assert "train:" in err and "4/4" in err and "loss=" in err and "tokens_per_s=" in err
  # The bar ends before the final evaluation: its rate and time are the loop's alone.
  last_bar = max(i for i, l in enumerate(err.splitlines()) if l.startswith("train:"))
  assert last_bar < err.splitlines().index(next(l for l in err.splitlines()
                                                if l.startswith("eval @ step 4")))
  assert any((work / "tensorboard").iterdir())
  run_id = (work / "wandb_run_id").read_text().strip()
  runs = sorted((work / "wandb").glob("offline-run-*"))
  assert len(runs) == 2 and all(r.name.endswith("-" + run_id) for r in runs), runs
  history = {**wandb_history(runs[0]), **wandb_history(runs[1])}
  expected = jsonl_by_step(work)
  assert sorted(history) == sorted(expected) == [0, 1, 2, 3, 4]
  for step, row in expected.items():
    assert history[step] == pytest.approx(row, rel=1e-6), step
  assert {"train/loss", "train/accuracy", "train/mfu", "train/tokens_per_s"} <= set(history[4])


def test_rl_run_logs_mfu_to_wandb_only(tmp_path, monkeypatch, capsys, smollm2_tokenizer):
  """trackers=wandb: no TensorBoard; the RL metrics (MFU included) in the W&B run under
  $WANDB_DIR, the progress bar with reward, tokens/s and MFU on stderr."""
  del smollm2_tokenizer
  pytest.importorskip("wandb")
  from helpsteer_jax.rlhf.train import train  # pylint: disable=g-import-not-at-top
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
  monkeypatch.setenv("WANDB_SILENT", "true")
  c = load_config("reinforce")
  c.train.trackers = "wandb"
  train(c, str(tmp_path / "rl"))
  assert not (tmp_path / "rl" / "tensorboard").exists()
  (run,) = (tmp_path / "wandb_dir" / "wandb").glob("offline-run-*")
  history, expected = wandb_history(run), jsonl_by_step(tmp_path / "rl")
  assert sorted(history) == sorted(expected) == [1, 2]
  for step, row in expected.items():
    assert history[step] == pytest.approx(row, rel=1e-6), step
  assert all(0 < history[s]["train/mfu"] < 1 and history[s]["train/model_tflops_per_s"] > 0
             for s in (1, 2))
  last = [l for l in capsys.readouterr().err.splitlines() if l.startswith("rlhf:")][-1]
  assert "2/2" in last and all(f"{k}=" in last for k in ("reward_mean", "tokens_per_s", "mfu"))
