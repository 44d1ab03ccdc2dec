"""The console scripts setup.py declares resolve to the CLIs and run from any folder's configs."""
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {"helpsteer-train": "helpsteer_jax.train:run", "helpsteer-rlhf": "helpsteer_jax.rlhf.train:run",
           "helpsteer-score": "helpsteer_jax.score:main",
           "helpsteer-evaluate": "helpsteer_jax.evaluate:main",
           "helpsteer-export": "helpsteer_jax.export:main", "helpsteer-expo": "helpsteer_jax.expo:main",
           "helpsteer-iterative": "helpsteer_jax.iterative:run"}


def test_entry_points_resolve():
  eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="console_scripts")
         if ep.value.startswith("helpsteer_jax")}
  if not eps:
    pytest.skip("helpsteer_jax is not pip-installed in this environment")
  assert {name: ep.value for name, ep in eps.items()} == SCRIPTS
  for ep in eps.values():
    assert callable(ep.load()), ep


@pytest.mark.parametrize("module", ["helpsteer_jax.train", "helpsteer_jax.rlhf.train"])
def test_trainer_entry_finds_configs_from_the_current_folder(module, tmp_path):
  # As the console script does: the interpreter's path lacks the repository, the cwd is the repo.
  # --helpshort parses the flags (the config file included, with its shared-base import), prints
  # the usage and exits (absl's exit code 1) without training.
  code = (f"import sys; sys.path = [p for p in sys.path if p not in ('', {str(REPO)!r})]; "
          f"sys.argv = ['x', '--config', 'experiments/bt.py:tiny', '--workdir', {str(tmp_path)!r},"
          f" '--config.train.steps=0', '--helpshort']; "
          f"import {module} as m; m.run()")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
  assert "USAGE" in out.stdout + out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr and "No module named" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("module,config,override", [
    ("helpsteer_jax.train", "bt.py:tiny", "--config.train.steps=0"),
    ("helpsteer_jax.rlhf.train", "reinforce.py:tiny", "--config.train.steps=0"),
    ("helpsteer_jax.iterative", "self_rewarding.py:tiny", "--config.loop.rounds=1"),
    ("helpsteer_jax.iterative", "spin.py:tiny", "--config.loop.rounds=1")])
def test_trainer_loads_a_config_from_any_folder(module, config, override, tmp_path):
  # The configs' shared base is in the package: no sys.path entry for the repository is needed,
  # whatever the current folder (the loop configs load experiments/dpo.py beside them).
  code = (f"import sys; sys.path = [p for p in sys.path if p not in ('', {str(REPO)!r})]; "
          f"sys.argv = ['x', '--config', {str(REPO / 'experiments' / config)!r}, "
          f"'--workdir', {str(tmp_path / 'run')!r}, {override!r}, '--helpshort']; "
          f"import {module} as m; m.run()")
  out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
  assert "USAGE" in out.stdout + out.stderr, out.stderr[-2000:]
  assert "Traceback" not in out.stderr and "No module named" not in out.stderr, out.stderr[-2000:]
  assert not (tmp_path / "run").exists()  # --helpshort parses and exits before any work


def test_load_config_reads_file_and_arg_as_the_config_flag_does(tmp_path):
  """launch.load_config("FILE[:ARG]"), for Python launchers: the same ConfigDict as
  `--config FILE:ARG` gives the trainer, settable; a missing file names itself."""
  from helpsteer_jax.training import launch
  (tmp_path / "mine.py").write_text(
      "import ml_collections\n"
      "def get_config(arg='base'):\n"
      "  return ml_collections.ConfigDict({'arg': arg, 'steps': 3})\n")
  assert launch.load_config(tmp_path / "mine.py").arg == "base"
  c = launch.load_config(f"{tmp_path / 'mine.py'}:smollm2,lora")
  assert (c.arg, c.steps) == ("smollm2,lora", 3)
  c.steps = 5  # unlocked, as get_config returns it
  assert launch.load_config(f"{REPO}/experiments/scaled_bt.py:tiny").loss.name == "scaled_bt"
  with pytest.raises(FileNotFoundError, match="nope.py"):
    launch.load_config(f"{tmp_path / 'nope.py'}:tiny")


@pytest.fixture
def no_cache_setting(monkeypatch):
  """jax with no compilation cache folder set (the tests' own is put back afterwards)."""
  import jax  # pylint: disable=g-import-not-at-top
  before = jax.config.jax_compilation_cache_dir
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.delenv("HELPSTEER_JAX_XLA_CACHE", raising=False)
  jax.config.update("jax_compilation_cache_dir", None)
  yield jax
  jax.config.update("jax_compilation_cache_dir", before)


def test_command_line_runs_use_a_compilation_cache(no_cache_setting, monkeypatch, tmp_path):
  from helpsteer_jax.training.launch import use_compilation_cache
  jax = no_cache_setting
  monkeypatch.setenv("HOME", str(tmp_path))
  want = str(tmp_path / ".cache" / "helpsteer_jax" / "xla")
  assert use_compilation_cache() == want and jax.config.jax_compilation_cache_dir == want
  # jax's own setting wins; $HELPSTEER_JAX_XLA_CACHE moves the folder or turns it off
  monkeypatch.setenv("HELPSTEER_JAX_XLA_CACHE", str(tmp_path / "elsewhere"))
  assert use_compilation_cache() == want
  jax.config.update("jax_compilation_cache_dir", None)
  assert use_compilation_cache() == str(tmp_path / "elsewhere")
  jax.config.update("jax_compilation_cache_dir", None)
  monkeypatch.setenv("HELPSTEER_JAX_XLA_CACHE", "off")
  assert use_compilation_cache() is None and jax.config.jax_compilation_cache_dir is None


def test_the_trainer_command_line_turns_the_cache_on(no_cache_setting, monkeypatch, tmp_path):
  """launch.run (every trainer's console script) sets the cache up before it trains."""
  from helpsteer_jax.training import launch
  jax = no_cache_setting
  monkeypatch.setenv("HELPSTEER_JAX_XLA_CACHE", str(tmp_path / "xla"))
  monkeypatch.setattr(sys, "argv", ["x", "--config", f"{REPO}/experiments/bt.py:tiny",
                                    "--workdir", str(tmp_path / "run")])
  seen = []
  with pytest.raises(SystemExit):  # absl's app.run exits after main
    launch.run(lambda config, workdir: seen.append(jax.config.jax_compilation_cache_dir))
  assert seen == [str(tmp_path / "xla")]
