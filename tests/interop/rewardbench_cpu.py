"""Runs the official RewardBench CLI (`rewardbench` 0.1.4) on CPU; arguments are the CLI's.

  python rewardbench_cpu.py --model DIR --dataset pairs.jsonl --load_json --not_quantized ...

The CLI hard-codes CUDA in two places: it maps the model to `Accelerator().process_index` (a GPU
number) and moves every tokenised batch with `.to("cuda")`. On a machine without a GPU both are
pointed at the CPU here; nothing else of the CLI is changed.
"""
import sys

import accelerate
import transformers


def _on_cpu() -> None:
  accelerate.Accelerator.process_index = property(lambda self: "cpu")
  to = transformers.BatchEncoding.to

  def to_cpu_for_cuda(self, device, *args, **kwargs):
    return self if str(device).startswith("cuda") else to(self, device, *args, **kwargs)

  transformers.BatchEncoding.to = to_cpu_for_cuda


if __name__ == "__main__":
  _on_cpu()
  from rewardbench.rewardbench import main  # pylint: disable=g-import-not-at-top
  sys.argv = ["rewardbench", *sys.argv[1:]]
  main()
