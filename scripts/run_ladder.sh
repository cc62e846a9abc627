#!/usr/bin/env bash
# The normalization budget ladder (issue: evidence part 2) in its priority order (hinet.sweep.LADDER_GRIDS):
# the 3k rung, the 300 and 1k rungs, knob separation, training patch size, placement, then the 10k rung.
# Resumable: after any stop, run it again and it continues where it was (finished runs are skipped, a
# half-finished one resumes from its last checkpoint). SIGTERM saves the run in progress and exits 130.
#   nohup scripts/run_ladder.sh > ladder.log 2>&1 &          (one heavy job at a time on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m hinet.sweep --ladder "$@"
