"""ExPO on tiny random checkpoints written as Hugging Face directories."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from helpsteer_jax import expo, export
from helpsteer_jax.models import PRESETS, LlamaRewardModel, load_pretrained
from helpsteer_jax.models import convert


def _reward_dir(path, cfg, seed):
  model = LlamaRewardModel(cfg, num_labels=1)
  params = nn.unbox(jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, 4), jnp.int32)))
  export.export_hf(params["params"], cfg, path, task="reward")
  return path


def test_expo_is_aligned_plus_alpha_times_the_difference_exactly(tmp_path, capsys):
  cfg = PRESETS["tiny"]
  a = _reward_dir(tmp_path / "init", cfg, 0)
  b = _reward_dir(tmp_path / "aligned", cfg, 1)
  out = tmp_path / "expo"
  expo.main(["--init", str(a), "--aligned", str(b), "--alpha", "0.3", "--out", str(out)])
  assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["alpha"] == 0.3
  pa, pb, po = (load_pretrained(str(p), tokenizer=False).params for p in (a, b, out))
  got = dict(convert.flatten(po))
  assert set(got) == set(dict(convert.flatten(pb)))
  for path, wb in convert.flatten(pb):
    wa = dict(convert.flatten(pa))[path]
    expected = wb + np.float32(0.3) * (wb - wa)
    np.testing.assert_array_equal(got[path], expected)
  assert not np.array_equal(got[("score", "kernel")], pb["score"]["kernel"])


def test_expo_rejects_mismatched_shapes_and_names(tmp_path):
  a = _reward_dir(tmp_path / "init", PRESETS["tiny"], 0)
  b = _reward_dir(tmp_path / "wide", PRESETS["tiny"].replace(intermediate_size=96), 1)
  with pytest.raises(ValueError, match=r"mlp/\w+_proj/kernel has shape"):
    expo.expo(str(a), str(b), 0.3, tmp_path / "out")
  p = load_pretrained(str(a), tokenizer=False).params
  no_head = {k: v for k, v in p.items() if k != "score"}
  with pytest.raises(ValueError, match=r"only in --aligned: \[score/kernel\]"):
    expo.extrapolate(no_head, p, 0.3)
