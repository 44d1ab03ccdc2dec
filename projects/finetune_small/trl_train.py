"""TRL's RewardTrainer on the study's pairs: the reference side of the parity comparison.

  python -m projects.finetune_small.trl_train --start DIR --pairs FILE --out DIR

Reads the start model (a Hugging Face reward-model directory written by run.py, the same one our
trainer starts from), the pre-tokenised pairs in the order our trainer draws them (one JSON line
per pair: chosen_ids, rejected_ids), and the study's settings (config.PARITY). Batches are taken in
file order (a sequential sampler), so both trainers see the same pairs in the same steps. Resumes
from its last checkpoint; writes DIR/final (the trained model, float32) and DIR/steps.jsonl (the
wall clock of every step, as our trainer's metrics.jsonl has it). Needs torch, transformers, trl
and accelerate; the library never imports this file.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from projects.finetune_small.config import PARITY


def main(argv: list[str] | None = None) -> None:
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  ap.add_argument("--start", required=True, help="Hugging Face reward-model directory")
  ap.add_argument("--pairs", required=True, help="jsonl of chosen_ids/rejected_ids, in order")
  ap.add_argument("--out", required=True)
  ap.add_argument("--seed", type=int, default=0)
  args = ap.parse_args(argv)

  import datasets  # pylint: disable=g-import-not-at-top
  import torch
  import transformers
  import trl

  torch.set_num_threads(os.cpu_count() or 1)
  p = PARITY
  out = Path(args.out)
  rows = [json.loads(line) for line in Path(args.pairs).read_text().splitlines()]
  data = datasets.Dataset.from_list(rows)
  tok = transformers.AutoTokenizer.from_pretrained(args.start)
  model = transformers.AutoModelForSequenceClassification.from_pretrained(
      args.start, dtype=torch.float32)
  out.mkdir(parents=True, exist_ok=True)
  steps_log = (out / "steps.jsonl").open("a", encoding="utf-8")
  segment = time.time()

  class Clock(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):  # pylint: disable=unused-argument
      steps_log.write(json.dumps({"step": state.global_step, "time": round(time.time(), 3),
                                  "segment_start": segment}) + "\n")
      steps_log.flush()

  class InOrder(trl.RewardTrainer):
    """Batches in file order: the order our trainer's batcher drew (written by run.py)."""

    def _get_train_sampler(self, train_dataset=None):
      return torch.utils.data.SequentialSampler(train_dataset or self.train_dataset)

  bf16 = p["precision"] == "bf16"
  conf = trl.RewardConfig(
      output_dir=str(out / "checkpoints"), seed=args.seed, data_seed=args.seed,
      per_device_train_batch_size=p["batch_size"], num_train_epochs=1,  # the file holds every epoch
      learning_rate=p["lr"], lr_scheduler_type="constant_with_warmup",
      warmup_steps=p["warmup_steps"], adam_beta1=p["b1"], adam_beta2=p["b2"],
      adam_epsilon=p["eps"], weight_decay=p["weight_decay"], max_grad_norm=p["grad_clip"],
      bf16=bf16, gradient_checkpointing=bf16, max_length=None, center_rewards_coefficient=None,
      use_cpu=True, report_to=[], logging_steps=1, save_strategy="steps",
      save_steps=p["checkpoint_every"], save_total_limit=1, dataloader_num_workers=0,
      disable_tqdm=True)
  trainer = InOrder(model=model, args=conf, train_dataset=data, processing_class=tok,
                    callbacks=[Clock()])
  resume = any((out / "checkpoints").glob("checkpoint-*"))
  trainer.train(resume_from_checkpoint=True if resume else None)
  steps_log.close()
  trainer.model.to(torch.float32).save_pretrained(out / "final", safe_serialization=True)
  tok.save_pretrained(out / "final")
  (out / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))


if __name__ == "__main__":
  main()
