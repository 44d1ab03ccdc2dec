"""Reading another run's parameters (`restore_params`) and workdirs given as URLs (gs://).

restore_params (init_from, export, evaluate, ExPO, RLHF reward models) reads only the `params`
of a saved train state, straight into target shardings on the 8 fake devices (conftest.py), the
rest to host numpy. Restored values equal the saved ones exactly (a copy, no arithmetic).

gs:// workdirs run without network on etils' own test double: `epath.testing.mock_epath` maps
gs://bucket/... onto a local folder; the two google-cloud-storage clients in the way (orbax's
bucket lookup, tensorboardX's event writer) are replaced by stand-ins.
"""
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from helpsteer_jax import sharding
from helpsteer_jax.models import PRESETS, LlamaRewardModel
from helpsteer_jax.training import checkpoint, launch, metrics_log
from helpsteer_jax.training.state import create_state, state_shardings


def _saved_run(workdir, mesh_shape, num_labels=5):
  """A tiny reward model's train state (AdamW moments included), saved at step 3."""
  model = LlamaRewardModel(PRESETS["tiny"], num_labels)
  init = lambda r: model.init(r, jnp.zeros((1, 8), jnp.int32))["params"]
  tx = optax.adamw(1e-3)
  mesh = sharding.make_mesh(mesh_shape)
  shardings = state_shardings(init, tx, mesh, sharding.DEFAULT_RULES)
  state = create_state(init, tx, jax.random.PRNGKey(0), shardings)
  ckpt = checkpoint.Checkpointer(workdir, every=1, keep=1)
  ckpt.save(3, state, {"epoch": 0, "position": 3}, force=True)
  ckpt.close()
  return state, init, tx


def _leaves(tree):
  return {jax.tree_util.keystr(p): x for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def test_params_restore_into_other_fsdp_shardings_and_head_to_host(tmp_path):
  state, init, tx = _saved_run(tmp_path, {"data": 1, "fsdp": 8, "tensor": 1})
  # The next run: another mesh; its backbone sharded, its (maybe narrower) head left to the host.
  mesh = sharding.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  target = state_shardings(init, tx, mesh, sharding.DEFAULT_RULES).params
  backbone = {k: v for k, v in target.items() if k != "score"}
  params = checkpoint.restore_params(tmp_path, backbone)
  assert set(params) == {"model", "score"}
  saved, got, want = _leaves(state.params), _leaves(params), _leaves(target)
  assert got.keys() == saved.keys()
  for name, x in got.items():
    if name.startswith("['score']"):
      assert isinstance(x, np.ndarray) and x.shape == (64, 5), name
    else:
      assert isinstance(x, jax.Array) and x.sharding == want[name], name
      # each device holds only its shard: an fsdp x tensor sharded kernel is split 4 ways
      if len(x.sharding.spec) == 2 and all(x.sharding.spec):
        assert x.addressable_shards[0].data.size == x.size // 4, name
    np.testing.assert_array_equal(np.asarray(x), np.asarray(saved[name]), err_msg=name)


def test_no_optimizer_state_is_read(tmp_path, monkeypatch):
  """The Adam moments (2x the parameters) never leave the disk: only params.* is deserialized."""
  _saved_run(tmp_path, {"data": 1, "fsdp": 8, "tensor": 1})
  read: list[str] = []
  for handler in (ocp.type_handlers.ArrayHandler, ocp.type_handlers.NumpyHandler,
                  ocp.type_handlers.ScalarHandler):
    def deserialize(self, infos, args=None, _orig=handler.deserialize):
      read.extend(info.name for info in infos)
      return _orig(self, infos, args)
    monkeypatch.setattr(handler, "deserialize", deserialize)
  params = checkpoint.restore_params(tmp_path)  # no shardings: all host numpy
  assert set(params) == {"model", "score"}
  assert all(isinstance(x, np.ndarray) for x in jax.tree_util.tree_leaves(params))
  assert read and all(name.startswith("params.") for name in read), sorted(read)[:5]
  assert len(read) == len(jax.tree_util.tree_leaves(params))


def test_dpo_policy_subtree_alone_and_metadata(tmp_path):
  """A DPO run saves {"policy", "ref"}: exporting it reads the policy only."""
  tree = {"policy": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
          "ref": {"w": np.ones((2, 3), np.float32)}}
  ckpt = checkpoint.Checkpointer(tmp_path, every=1, keep=1)
  ckpt.save(1, {"params": tree, "opt_state": {"mu": tree}}, {}, force=True)
  ckpt.close()
  meta = checkpoint.params_metadata(tmp_path)
  assert set(meta) == {"policy", "ref"} and tuple(meta["policy"]["w"].shape) == (2, 3)
  out = checkpoint.restore_params(tmp_path, subtree=("policy",))
  assert set(out) == {"w"}
  np.testing.assert_array_equal(out["w"], tree["policy"]["w"])
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    checkpoint.restore_params(tmp_path / "elsewhere")


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
  """gs://bucket/key -> tmp_path/gcs/bucket/key for epath (hence orbax's files) and TensorBoard.

  Yields the local root. The working directory is an empty folder, so a gs:// path that pathlib
  turned into a local `gs:` folder would show there.
  """
  root = tmp_path / "gcs"
  root.mkdir()
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  monkeypatch.chdir(cwd)

  def local(path):
    path = os.fspath(path)
    return str(root / path[len("gs://"):]) if path.startswith("gs://") else path

  one = lambda fn, path, *a, **k: fn(local(path), *a, **k)
  two = lambda fn, src, dst, *a, **k: fn(local(src), local(dst), *a, **k)
  mocks = {n: one for n in ("exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open",
                            "remove", "rmtree", "stat", "walk")}
  mocks.update(copy=two, rename=two, replace=two)

  class EpathEventFiles:  # tensorboardX's gs:// writer needs google-cloud-storage and network
    def open(self, path):
      return epath.Path(path).open("wb")

    def directory_check(self, path):
      epath.Path(path).mkdir(parents=True, exist_ok=True)

  from orbax.checkpoint._src.path import gcs_utils  # pylint: disable=g-import-not-at-top
  from tensorboardX import record_writer  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(record_writer.REGISTERED_FACTORIES, "gs", EpathEventFiles())
  # orbax asks the bucket whether it has a hierarchical namespace before listing steps
  monkeypatch.setattr(gcs_utils, "get_bucket",
                      lambda name: types.SimpleNamespace(hierarchical_namespace_enabled=False))
  with epath_testing.mock_epath(**mocks):
    yield root
  assert list(cwd.iterdir()) == []  # nothing went to a local gs: folder


def test_gs_checkpoint_dir_stays_a_url(fake_gcs):
  ckpt = checkpoint.Checkpointer("gs://bucket/run", every=1, keep=1)
  try:
    assert str(ckpt.manager.directory) == "gs://bucket/run/checkpoints"
    assert (fake_gcs / "bucket" / "run" / "checkpoints").is_dir()
    assert ckpt.latest_step() is None
  finally:
    ckpt.close()


def test_metrics_go_to_a_gs_workdir_and_survive_a_resume(fake_gcs):
  for step in (1, 2):  # two sessions: the second must keep the first's rows
    log = metrics_log.Logger(epath.Path("gs://bucket/run"))  # as train.py passes it
    log.scalars(step, {"loss": 0.5 / step}, prefix="train/")
    log.close()
  rows = [json.loads(l) for l in
          (fake_gcs / "bucket" / "run" / "metrics.jsonl").read_text().splitlines()]
  # Each row carries its wall clock (unix seconds), so step times survive a resume.
  assert [{k: v for k, v in r.items() if k != "time"} for r in rows] == [
      {"step": 1, "train/loss": 0.5}, {"step": 2, "train/loss": 0.25}]
  assert 0 < rows[0]["time"] <= rows[1]["time"]
  events = list((fake_gcs / "bucket" / "run" / "tensorboard").iterdir())
  # (one file per session, but named by the second: both sessions here may share one name)
  assert events and all(e.name.startswith("events.out.tfevents") and e.stat().st_size > 0
                        for e in events)


@pytest.mark.slow  # out of the default 6-minute run; CI runs it with -m slow
@pytest.mark.needs_data
def test_trainer_accepts_a_gs_workdir(fake_gcs, monkeypatch, shared_data, smollm2_tokenizer):
  """config.json, metrics, TensorBoard and summary.json land in the bucket, none in a local gs:.

  Checkpoint arrays go through tensorstore's own GCS driver, out of epath's reach: the
  Checkpointer is handed the URL (checked) and writes to the bucket's local stand-in.
  """
  del shared_data, smollm2_tokenizer
  from pathlib import Path  # pylint: disable=g-import-not-at-top
  from helpsteer_jax.train import train  # pylint: disable=g-import-not-at-top
  given = []

  class BucketCheckpointer(checkpoint.Checkpointer):
    def __init__(self, workdir, **kw):
      given.append(str(workdir))
      super().__init__(fake_gcs / str(workdir)[len("gs://"):], **kw)

  monkeypatch.setattr(checkpoint, "Checkpointer", BucketCheckpointer)
  repo = Path(__file__).resolve().parents[1]
  c = launch.load_config(f"{repo}/experiments/bt.py:tiny")
  c.train.steps = 2
  out = train(c, "gs://bucket/run")
  assert out["step"] == 2 and given == ["gs://bucket/run"]
  run = fake_gcs / "bucket" / "run"
  assert {"config.json", "metrics.jsonl", "summary.json", "tensorboard",
          "checkpoints"} <= {p.name for p in run.iterdir()}
  assert any('"train/loss"' in row for row in (run / "metrics.jsonl").read_text().splitlines())
