"""Chat-template tokenisation: one render, no added special tokens, the prompt/response boundary,
left truncation of the oldest turns, and too-long records dropped and counted."""
import numpy as np
import pytest

from helpsteer_jax.data import (ChatEncoder, Counts, DataError, PreferencePair, RatedExample,
                                encode_pairs, encode_ratings)
from helpsteer_jax.data.encoding import prompt_candidates


def user(text):
  return {"role": "user", "content": text}


def assistant(text):
  return {"role": "assistant", "content": text}


def test_ids_are_the_rendered_template_tokenised_once(smollm2_tokenizer):
  tok = smollm2_tokenizer
  messages = [user("What is 2+2?"), assistant("4."), user("And times 3?")]
  (seq,), truncated = ChatEncoder(tok, 1024).encode(messages, ["It is 12."])
  text = tok.apply_chat_template(messages + [assistant("It is 12.")], tokenize=False)
  assert not truncated
  assert seq.input_ids.dtype == np.int32
  assert seq.input_ids.tolist() == tok(text, add_special_tokens=False)["input_ids"]
  assert tok.decode(seq.input_ids) == text  # nothing added, nothing lost
  assert seq.input_ids[0] != seq.input_ids[1]  # no doubled leading special token


def test_prompt_length_splits_prompt_and_response(smollm2_tokenizer):
  tok = smollm2_tokenizer
  messages = [user("Name a fruit.")]
  (seq,), _ = ChatEncoder(tok, 1024).encode(messages, ["Banana, ripe and yellow."])
  prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
  assert tok.decode(seq.input_ids[:seq.prompt_len]) == prompt
  assert tok.decode(seq.input_ids[seq.prompt_len:]).startswith("Banana, ripe and yellow.")


def test_truncation_drops_oldest_exchanges_keeps_system_final_turn_and_response(
    smollm2_tokenizer):
  tok = smollm2_tokenizer
  long_turn = "blah " * 150
  messages = [{"role": "system", "content": "Be terse."}, user("Old question " + long_turn),
              assistant("Old answer " + long_turn), user("Middle question?"),
              assistant("Middle answer."), user("Final question?")]
  encoder = ChatEncoder(tok, 200)
  (seq,), truncated = encoder.encode(messages, ["The whole response."])
  text = tok.decode(seq.input_ids)
  assert truncated and len(seq.input_ids) <= 200
  assert "Old question" not in text and "Old answer" not in text
  assert "Be terse." in text and "Middle question?" in text and "Final question?" in text
  assert text.rstrip().endswith("The whole response.<|im_end|>")


def test_prompt_candidates_remove_whole_exchanges_oldest_first():
  system = {"role": "system", "content": "S"}
  msgs = [system, assistant("Welcome!"), user("u1"), assistant("a1"), user("u2"), assistant("a2"),
          user("u3")]
  assert prompt_candidates(msgs) == [msgs, [system] + msgs[2:], [system] + msgs[4:],
                                     [system, user("u3")]]
  assert prompt_candidates([user("only")]) == [[user("only")]]


def test_pair_sides_share_one_truncation(smollm2_tokenizer):
  """The longer response forces the cut; the shorter side gets the same prompt."""
  tok = smollm2_tokenizer
  messages = [user("First " + "word " * 60), assistant("Reply."), user("Second?")]
  pair = PreferencePair(messages, "ok " * 100, "no.", 1.0, "f.jsonl", 3)
  counts = Counts(kept=1)
  (enc,) = encode_pairs([pair], tok, 140, counts)
  assert counts.truncated == 1 and counts.too_long == 0 and counts.kept == 1
  c_prompt = enc.chosen.input_ids[:enc.chosen.prompt_len].tolist()
  r_prompt = enc.rejected.input_ids[:enc.rejected.prompt_len].tolist()
  assert c_prompt == r_prompt and "First" not in tok.decode(c_prompt)
  assert (enc.source, enc.row, enc.strength) == ("f.jsonl", 3, 1.0)
  assert enc.length == len(enc.chosen.input_ids) > len(enc.rejected.input_ids)


def test_too_long_is_dropped_and_counted_never_cut(smollm2_tokenizer):
  tok = smollm2_tokenizer
  fits = PreferencePair([user("Hi?")], "Hello.", "Bye.", 2.0, "f.jsonl", 1)
  huge_prompt = PreferencePair([user("word " * 300)], "Hello.", "Bye.", 1.0, "f.jsonl", 2)
  huge_reply = PreferencePair([user("Hi?")], "word " * 300, "Bye.", 1.0, "f.jsonl", 3)
  counts = Counts(kept=3)
  out = encode_pairs([fits, huge_prompt, huge_reply], tok, 128, counts)
  assert [p.row for p in out] == [1]
  assert (counts.kept, counts.too_long, counts.truncated) == (1, 2, 0)
  rated = [RatedExample([user("Hi?")], "word " * 300, {"helpfulness": 1.0}, "r.jsonl", 1),
           RatedExample([user("Hi?")], "Hello.", {"helpfulness": 4.0}, "r.jsonl", 2)]
  rcounts = Counts(kept=2)
  (only,) = encode_ratings(rated, tok, 128, rcounts)
  assert only.row == 2 and only.attributes == {"helpfulness": 4.0}
  assert (rcounts.kept, rcounts.too_long) == (1, 1)


def test_tokenizer_without_chat_template_is_an_error():
  class NoTemplate:
    chat_template = None

  with pytest.raises(DataError, match="no chat_template"):
    ChatEncoder(NoTemplate(), 128)


def test_template_failure_names_the_record():
  class StrictTemplate:  # like templates that raise_exception() on roles they do not accept
    chat_template = "strict"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
      raise ValueError("Conversation roles must alternate user/assistant")

  pair = PreferencePair([user("Hi?")], "Hello.", "Bye.", 1.0, "f.jsonl", 4)
  with pytest.raises(DataError, match="^f.jsonl:4: the chat template cannot render.*alternate"):
    encode_pairs([pair], StrictTemplate(), 128)
