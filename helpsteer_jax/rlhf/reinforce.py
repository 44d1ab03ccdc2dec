"""RLOO REINFORCE with a KL penalty against a frozen reference policy (pure functions).

Ahmadian et al. 2024 ("Back to Basics: Revisiting REINFORCE Style Optimization for Learning from
Human Feedback in LLMs"), as NeMo-Aligner's REINFORCE trainer runs it:

  R_i   = r_i − β · KL_i,   KL_i = Σ_t (log q(y_t) − log p_ref(y_t))   (sampled tokens only)
  A_i   = R_i − 1/(k−1) Σ_{j≠i} R_j                                     (leave-one-out baseline)
  loss  = −1/B Σ_i A_i · Σ_t log q(y_{i,t})                             (response tokens only)

for k samples of each prompt (B = prompts × k rows, the k samples of a prompt adjacent).

q is the distribution the responses were sampled from: the policy's logits divided by the
temperature, then cut to the top-k and the top-p nucleus (rlhf/generate.py: `sampling_logits`, the
one implementation the sampler and the trainer's log-probs share). Scoring the samples with the
untempered, unfiltered π instead would make the gradient that of a distribution that did not
sample them. p_ref is the reference tempered the same way but not filtered (`reference_sampling`):
with the filters, a token the policy samples outside the reference's own top-k / nucleus would get
log p_ref = −inf and an infinite KL. So the KL is KL(q‖softmax(ref_logits / T)): exactly 0 at
the start when top-k and top-p are off, and Σ_t −log(reference mass inside q's kept set) ≥ 0 at
the start when they are on (a filtered q can never equal an unfiltered reference). Temperature 0
(greedy) is refused in training: it samples nothing.

The KL term is the usual single-sample estimate of KL(q‖p_ref) on the sampled sequence; it is
part of the reward (it gets no gradient of its own), so the policy is pulled back towards the
reference through the same score-function gradient. Normalisation: the whole response is one
action, so the log-probabilities of its tokens are summed (not averaged over tokens, which would
down-weight long responses), and the loss is the mean over sequences.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from helpsteer_jax.rlhf.generate import SamplingConfig

Metrics = dict[str, jax.Array]


def reference_sampling(sc: SamplingConfig) -> SamplingConfig:
  """The transformation of the reference's logits for the KL: `sc`'s temperature, no top-k or
  top-p (a filtered reference could give a sampled token probability 0; see the module doc)."""
  return dataclasses.replace(sc, top_k=0, top_p=1.0)


def rloo_advantages(rewards: jax.Array, k: int) -> jax.Array:
  """A_i = R_i − mean of the other k−1 rewards of the same prompt; rewards [P·k] (groups adjacent)."""
  if k < 2:
    raise ValueError(f"RLOO needs k >= 2 samples per prompt, got {k}")
  r = jnp.asarray(rewards, jnp.float32).reshape(-1, k)
  others = (jnp.sum(r, axis=1, keepdims=True) - r) / (k - 1)
  return (r - others).reshape(-1)


def sequence_kl(policy_logprobs: jax.Array, ref_logprobs: jax.Array,
                response_mask: jax.Array) -> jax.Array:
  """Σ_t (log q − log p_ref) over response tokens: [B] (0 where q == p_ref)."""
  real = jnp.asarray(response_mask) != 0
  diff = jnp.where(real, jnp.asarray(policy_logprobs, jnp.float32)
                   - jnp.asarray(ref_logprobs, jnp.float32), 0.0)
  return jnp.sum(diff, axis=-1)


def shaped_rewards(rewards: jax.Array, kl: jax.Array, beta: float) -> jax.Array:
  """R = r − β·KL (per sequence)."""
  return jnp.asarray(rewards, jnp.float32) - beta * jnp.asarray(kl, jnp.float32)


def reinforce_loss(*, logprobs: jax.Array, advantages: jax.Array,
                   response_mask: jax.Array) -> tuple[jax.Array, Metrics]:
  """−mean_i A_i · Σ_t log q(y_{i,t}); logprobs, response_mask [B, N]; advantages [B].

  `logprobs` are under the sampling distribution q (see the module doc). The advantages are
  constants (stop_gradient): only log q carries the gradient.
  """
  real = jnp.asarray(response_mask) != 0
  seq_logp = jnp.sum(jnp.where(real, jnp.asarray(logprobs, jnp.float32), 0.0), axis=-1)
  adv = jax.lax.stop_gradient(jnp.asarray(advantages, jnp.float32))
  loss = -jnp.mean(adv * seq_logp)
  return loss, {"loss": loss, "seq_logprob": jnp.mean(seq_logp),
                "advantage_abs": jnp.mean(jnp.abs(adv))}
