#!/usr/bin/env bash
# Every long training of the project in priority order, for `scripts/background.sh start` (its default job):
# the task defaults (scripts/train_defaults.sh), then the normalization budget ladder (scripts/run_ladder.sh),
# so the CPU does not idle when one ends mid-session. Resumable like both: run it again after any stop. A
# stop signal to the training in progress saves it and ends the whole chain (exit status 130).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/train_defaults.sh
scripts/run_ladder.sh
