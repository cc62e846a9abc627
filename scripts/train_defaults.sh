#!/usr/bin/env bash
# The task defaults (issue: default models that beat the classical methods), in order: the pilot that
# chooses width and patch on validation (configs/default_pilot.yaml -> configs/default_shape.yaml), the one
# that chooses the learning rate (configs/default_lr_pilot.yaml -> configs/default_lr.yaml), then deblur,
# jpeg, derain and denoise, each for the steps of its configs/default_<task>.yaml (denoise last: it shipped
# at 40000 steps and trains on to the 80000 its config now plans). Resumable: after
# any stop, run it again and it continues where it was (a finished run only reports). SIGTERM to the
# training in progress saves its checkpoint and ends the whole script (exit status 130).
#   nohup scripts/train_defaults.sh > defaults.log 2>&1 &        (one heavy job at a time on 2 cores)
# Ship a run's best checkpoint as it improves: scripts/ship_model.py results/defaults/<task>.
set -euo pipefail
cd "$(dirname "$0")/.."
# the scripts import hinet from this copy of the code, not from wherever the venv installed it (a frozen
# copy run from /tmp must not pick up edits made meanwhile to the checkout the venv points at)
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-.venv/bin/python}"
"$python" scripts/pilot_defaults.py configs/default_pilot.yaml
"$python" scripts/pilot_defaults.py configs/default_lr_pilot.yaml
for task in ${TASKS:-deblur jpeg derain denoise}; do
  "$python" -m hinet.train --config "configs/default_$task.yaml" --no-progress
done
