"""Scores texts with an exported reward model in transformers 4.x (in make_tf4_venv.sh's venv).

  python score_tf4.py MODEL_DIR TEXTS.json

TEXTS.json is a list of rendered conversations; prints one JSON line {"transformers": version,
"rewards": [...]} with head output 0 of each, batched with padding as a user would call it.
"""
import json
import sys

import torch
import transformers


def main(model_dir: str, texts_path: str) -> None:
  texts = json.loads(open(texts_path, encoding="utf-8").read())
  tok = transformers.AutoTokenizer.from_pretrained(model_dir)
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      model_dir, torch_dtype=torch.float32).eval()
  with torch.no_grad():
    logits = model(**tok(texts, padding=True, return_tensors="pt")).logits
  print(json.dumps({"transformers": transformers.__version__,
                    "rewards": logits[:, 0].tolist()}))


if __name__ == "__main__":
  main(*sys.argv[1:])
