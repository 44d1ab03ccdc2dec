"""A word-level tokenizer with a chat template, for tests on tiny random models (no download)."""
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<s>", "</s>", "<unk>", "user:", "assistant:"]


def word_tokenizer(vocab_size: int, extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
  """Ids 0.. for SPECIAL + extra_words, then filler words w0, w1, ... up to vocab_size.

  Text splits on whitespace; the chat template renders `<s> user: ... </s> assistant: ... </s>`.
  """
  words = SPECIAL + list(extra_words)
  vocab = {w: i for i, w in enumerate(words + [f"w{i}" for i in range(vocab_size - len(words))])}
  tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
  tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
  fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                 eos_token="</s>", unk_token="<unk>")
  fast.chat_template = ("<s>{% for m in messages %} {{ m['role'] }}: {{ m['content'] }} </s>"
                        "{% endfor %}{% if add_generation_prompt %} assistant:{% endif %}")
  return fast
