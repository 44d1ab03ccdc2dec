"""DPO through the reward-model trainer (helpsteer_jax.train with experiments/dpo.py:tiny).

At step 0 the policy equals the frozen reference, so every implicit reward is 0, the loss is
log 2 and the (strict) accuracy 0; a few steps on the same pairs must rank most of them right.
"""
from pathlib import Path

import numpy as np
import pytest
from helpsteer_jax.training import launch

REPO = Path(__file__).resolve().parents[1]


def _config(arg):
  return launch.load_config(f"{REPO}/experiments/dpo.py:{arg}")


def test_dpo_raises_train_set_implicit_reward_accuracy(tmp_path, smollm2_tokenizer,
                                                        monkeypatch):
  del smollm2_tokenizer
  from helpsteer_jax.runs import load_model
  from helpsteer_jax.training import metrics_log
  from helpsteer_jax.training.checkpoint import restore_params
  from helpsteer_jax.train import train
  meters = []  # the trainer's throughput meter, to check what its MFU counts

  class Recording(metrics_log.Throughput):
    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      meters.append(self)

  monkeypatch.setattr(metrics_log, "Throughput", Recording)
  c = _config("tiny")
  c.data.max_length = 160  # the shortest pairs: 49k-word logits dominate the cost
  c.data.pad_to_multiple_of = 160  # one batch shape, one compile
  c.data.max_train_examples = 4
  c.data.batch_size = 2
  c.data.eval = c.data.train  # accuracy on the training pairs themselves
  c.data.max_eval_examples = 4
  c.data.eval_batch_size = 4
  c.mesh.data = 1
  c.train.steps = 3  # warm-up step (LR 0) + 2 updates
  out = train(c, str(tmp_path))
  # MFU counts the LM head (the vocabulary-wide matmul) and the reference's forward pass.
  (meter,) = meters
  flops_per_token = metrics_log.train_flops_per_token(meter.cfg, 160, meter.cfg.vocab_size)
  meter.read()  # a fresh interval
  meter.add({"attention_mask": np.ones((1, 160), np.int32)})
  assert meter._since_read[2] == pytest.approx(160 * flops_per_token * 4 / 3, rel=1e-12)
  before, after = out["eval_before"], out["eval_after"]
  assert before["accuracy"] == 0.0 and before["loss"] == pytest.approx(np.log(2), abs=1e-5)
  assert after["accuracy"] >= 0.75 and after["loss"] < before["loss"]
  saved = restore_params(tmp_path)
  assert not np.array_equal(saved["policy"]["lm_head"]["kernel"], saved["ref"]["lm_head"]["kernel"])
  # The workdir loads as the policy (a causal LM without a reward head).
  pre = load_model(str(tmp_path), tokenizer=False)
  assert pre.num_labels is None
  np.testing.assert_array_equal(pre.params["lm_head"]["kernel"], saved["policy"]["lm_head"]["kernel"])


def test_frozen_subtree_never_changes():
  import jax.numpy as jnp
  import optax
  from helpsteer_jax.training.optimizer import freeze
  params = {"policy": {"w": jnp.ones((2, 2))}, "ref": {"w": jnp.ones((2, 2))}}
  grads = {"policy": {"w": jnp.ones((2, 2))}, "ref": {"w": jnp.ones((2, 2))}}
  tx = freeze(optax.adamw(0.1, weight_decay=0.1), "ref")
  updates, _ = tx.update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(new["ref"]["w"], params["ref"]["w"])
  assert not np.array_equal(new["policy"]["w"], params["policy"]["w"])


@pytest.mark.parametrize("arg", ["tiny,dpo_margin", "tiny,dpo_scaled"])
def test_dpo_variant_configs_select_their_loss(arg):
  c = _config(arg)
  assert c.loss.name == arg.split(",")[1] and c.loss.beta == 0.1
