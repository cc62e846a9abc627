#!/usr/bin/env bash
# Early learning-rate check of a task default: configs/default_<task>.yaml trained at each given learning
# rate for the first STEPS steps of its full schedule (the same warm-up, the cosine over the config's
# steps), each stopped by one SIGTERM (the training saves its checkpoint) into
# results/defaults/<task>_lr_check/lr<rate>/, then their validation PSNR side by side. The short pilots
# (scripts/pilot_defaults.py) anneal over their own budget and were run on denoise only; this shows whether
# a rate survives the start of the long run. Resumable: a rate already at STEPS is not trained again.
#   scripts/early_lr_check.sh deblur 3e-3 1e-3          (STEPS=4900 by default; one heavy job at a time)
#   STEPS=0 scripts/early_lr_check.sh deblur 3e-3 1e-3  (only print the comparison of what is on disk)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-.venv/bin/python}"
if [ $# -lt 2 ]; then
  echo "usage: [STEPS=4900] scripts/early_lr_check.sh TASK RATE [RATE ...]   e.g. deblur 3e-3 1e-3" >&2
  exit 2
fi
task="$1"
shift
steps="${STEPS:-4900}"
if ! [[ "$steps" =~ ^[0-9]+$ ]]; then
  echo "STEPS must be a whole number of steps, not '$steps'" >&2
  exit 2
fi
check_dir="results/defaults/${task}_lr_check"

last_step() {  # the last logged step of a run's log.jsonl; 0 before it exists
  "$python" -c 'import json, pathlib, sys
p = pathlib.Path(sys.argv[1])
lines = p.read_text().splitlines() if p.is_file() else []
print(json.loads(lines[-1])["step"] if lines else 0)' "$1"
}

for rate in "$@"; do
  log="$check_dir/lr$rate/log.jsonl"
  if [ "$steps" -eq 0 ]; then continue; fi
  if [ "$(last_step "$log")" -ge "$steps" ]; then
    echo "lr $rate: already trained to $steps steps"
    continue
  fi
  "$python" -m hinet.train --config "configs/default_$task.yaml" --set "optimizer.lr=$rate" \
    --set "out_dir=$check_dir" --set "run_name=lr$rate" --no-progress &
  pid=$!
  # A second signal would make the training quit without saving: pass a stop on once, then wait for it.
  trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" || true; exit 130' TERM
  trap 'wait "$pid" || true; exit 130' INT  # Ctrl-C reaches the training itself, which saves and exits
  sent=""
  while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    if [ -z "$sent" ] && [ "$(last_step "$log")" -ge "$steps" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      sent=1
    fi
  done
  status=0
  wait "$pid" || status=$?
  trap - INT TERM
  if [ "$status" -ne 0 ] && ! { [ -n "$sent" ] && [ "$status" -eq 130 ]; }; then
    echo "lr $rate: the training ended with status $status before $steps steps" >&2
    exit "$status"
  fi
done
"$python" - "$check_dir" "$@" <<'PY'
import json, sys
from pathlib import Path

check_dir, rates = Path(sys.argv[1]), sys.argv[2:]
curves = {}
for rate in rates:
    log = check_dir / f"lr{rate}" / "log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    curves[rate] = {r["step"]: r["val_psnr"] for r in records if r.get("val_psnr") is not None}
print("validation PSNR (dB) by step: " + " | ".join(f"lr {rate}" for rate in rates))
for step in sorted({s for curve in curves.values() for s in curve}):
    print(f"{step:>6} " + " ".join(f"{curves[r].get(step, float('nan')):>9.3f}" for r in rates))
for rate in rates:
    if curves[rate]:
        best = max(curves[rate], key=curves[rate].get)
        low = min(curves[rate], key=curves[rate].get)
        print(f"lr {rate}: best {curves[rate][best]:.3f} dB at step {best}, lowest {curves[rate][low]:.3f} dB at step {low}")
PY
