#!/usr/bin/env bash
# Makes the virtual environment in which the slow tests of tests/test_export_interop.py load an
# export with transformers 4.51 and run the official RewardBench CLI (rewardbench==0.1.4 pins
# transformers==4.51.0), the versions users still run. Built once; a ready venv is reused.
#
#   bash tests/interop/make_tf4_venv.sh [VENV]
#
# VENV defaults to $HELPSTEER_TF4_VENV, else /tmp/helpsteer_tf4_venv; $PYTHON picks the interpreter
# (default python3). Prints the venv's python on success; exits non-zero when it cannot be made
# (no package index reachable, for instance), which the tests turn into a skip.
set -euo pipefail

venv="${1:-${HELPSTEER_TF4_VENV:-/tmp/helpsteer_tf4_venv}}"
ready="$venv/.helpsteer_tf4_ready"
if [[ -f "$ready" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch 2.13.0 is the CPU build the main environment uses; any other version is a download of
# gigabytes. transformers, accelerate, datasets and trl are versions of transformers-4.51's time.
"${pip[@]}" "torch==2.13.0" "transformers==4.51.0" "accelerate==1.6.0" "datasets==3.5.0" \
  "trl==0.17.0" "setuptools<81" sentencepiece pandas tqdm wandb
# rewardbench's declared requirements pull bitsandbytes, linters and another torch resolution; the
# CLI imports only the packages above plus fastchat's conversation templates, so both go in
# without their dependencies.
"${pip[@]}" --no-deps "rewardbench==0.1.4" "fschat==0.2.36"
# pkg_resources (setuptools<81) and trl are imported when the CLI module loads: check it here.
"$venv/bin/python" -W ignore -c "import transformers, rewardbench.rewardbench" >/dev/null
touch "$ready"
echo "$venv/bin/python"
