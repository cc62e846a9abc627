#!/usr/bin/env bash
# Ship a long task default (results/defaults/<task>, its best validation checkpoint) as the app's model for
# the task, all steps in order: copy it in fp16 (scripts/ship_model.py, which also picks its default
# test-time statistics on validation), evaluate it on the test set with the classical baselines at the
# task's levels under every protocol (results/eval/<task>.csv and .txt), record that score in its
# metadata, and regenerate results/README.md. KEEP_AS=<name> first keeps the model it replaces beside it
# as results/models/<name>.safetensors, with its evaluation (add <name> to LEGACY_METADATA in
# tests/test_shipped_models.py when the old file lacks metadata, and say in the commit why it stays).
#   scripts/ship_default.sh deblur
#   KEEP_AS=jpeg_bn scripts/ship_default.sh jpeg
# Run it with the CPU otherwise quiet (scripts/background.sh stop): the evaluation times every method.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
if [ $# -ne 1 ]; then
  echo "usage: [KEEP_AS=<name>] scripts/ship_default.sh TASK" >&2
  exit 2
fi
task="$1"
run="results/defaults/$task"
model="results/models/$task.safetensors"
# a training still running could write a newer best checkpoint between the copy and the score it records,
# and it would slow the timed evaluation
training="${TRAINING_PROCESSES:-hinet\.train|hinet\.sweep|pilot_defaults\.py|hinet-train|hinet-sweep}"
if pgrep -af -- "$training" | grep -v "^$$ "; then
  echo "a training is running (above): stop it first (scripts/background.sh stop)" >&2
  exit 2
fi
if [ ! -f "$run/best.safetensors" ]; then
  echo "no best checkpoint in $run (trained on this machine, or carried with scripts/carry_state.py?)" >&2
  exit 2
fi
if [ -n "${KEEP_AS:-}" ]; then
  kept="results/models/$KEEP_AS.safetensors"
  if [ -e "$kept" ]; then
    echo "$kept exists already; choose another KEEP_AS" >&2
    exit 2
  fi
  git mv "$model" "$kept"
  for ext in csv txt; do
    [ ! -f "results/eval/$task.$ext" ] || git mv "results/eval/$task.$ext" "results/eval/$KEEP_AS.$ext"
  done
  # the evaluation's first line names the file it scored: the same weights, now under the kept name
  [ ! -f "results/eval/$KEEP_AS.txt" ] || sed -i "1s|^$task\.safetensors:|$KEEP_AS.safetensors:|" "results/eval/$KEEP_AS.txt"
fi
"$python" scripts/ship_model.py "$run"
"$python" -m hinet.evaluate "$model" --task-levels --protocol all --baselines --out-csv "results/eval/$task.csv" |
  tee "results/eval/$task.txt"
"$python" scripts/ship_model.py "$run" --eval-csv "results/eval/$task.csv"
"$python" scripts/make_results_readme.py
echo "shipped $run as $model; review results/README.md and git status, then commit"
