"""notebooks/quickstart.ipynb runs top to bottom on CPU (a few steps, offline), so it never rots.

The notebook's parameters cell reads QUICKSTART_* environment variables; here 2 training steps
of 256-token sequences and 4 RewardBench rows per subset (or the shipped sample's held-out pairs
when ../shared/data is absent), with the hub off. The kernel is a fresh process with one CPU
device (the test session's 8 fake devices would not divide the notebook's batch of 4).
"""
import json
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow  # compiles the real SmolLM2 train step: minutes; CI runs it with -m slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path, monkeypatch, smollm2_tokenizer):
  del smollm2_tokenizer  # skips when the packaged SmolLM2 is not installed
  work = tmp_path / "work"
  for key, value in {"QUICKSTART_STEPS": "2", "QUICKSTART_MAX_LENGTH": "256",
                     "QUICKSTART_EVAL_ROWS": "4", "QUICKSTART_WORKDIR": str(work),
                     "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                     "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
                     "MPLBACKEND": "agg"}.items():
    monkeypatch.setenv(key, value)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  out = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                for o in c.get("outputs", []))
  assert "2 steps, max length 256" in out and "validation after:" in out
  rows = [json.loads(l) for l in (work / "rm" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2]
  scored = [json.loads(l) for l in (work / "scored.jsonl").read_text().splitlines()]
  assert len(scored) == 2 and all("reward_chosen" in r for r in scored)
  results = json.loads((work / "eval" / "results.json").read_text())
  assert results["pairs"]["scored"] > 0 and 0.0 <= results["accuracy"] <= 1.0
  assert f"accuracy {results['accuracy']:.3f}" in out
  # the plot cell drew the loss curve (an image output)
  assert any("image/png" in o.get("data", {}) for o in nb.cells[-1].get("outputs", []))
