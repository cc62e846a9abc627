#!/usr/bin/env bash
# Early learning-rate check of a task default: configs/default_<task>.yaml trained at each given learning
# rate for the first STEPS steps of its full schedule (the same warm-up, the cosine over the config's
# steps), each stopped by SIGTERM (checkpoint saved) into results/defaults/<task>_lr_check/lr<rate>/, then
# their validation PSNR side by side. The short pilots (scripts/pilot_defaults.py) anneal over their own
# budget and were run on denoise only; this shows whether a rate survives the start of the long run.
#   scripts/early_lr_check.sh deblur 3e-3 1e-3          (STEPS=4900 by default; one heavy job at a time)
#   STEPS=0 scripts/early_lr_check.sh deblur 3e-3 1e-3  (only print the comparison of what is on disk)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python="${PYTHON:-.venv/bin/python}"
task="$1"
shift
steps="${STEPS:-4900}"
check_dir="results/defaults/${task}_lr_check"
for rate in "$@"; do
  log="$check_dir/lr$rate/log.jsonl"
  [ "$steps" -gt 0 ] || continue
  "$python" -m hinet.train --config "configs/default_$task.yaml" --set "optimizer.lr=$rate" \
    --set "out_dir=$check_dir" --set "run_name=lr$rate" --no-progress &
  pid=$!
  trap 'kill -TERM $pid 2>/dev/null; wait $pid; exit 130' INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 10
    done_steps=$(tail -n 1 "$log" 2>/dev/null | "$python" -c 'import json, sys; print(json.loads(sys.stdin.read() or "{}").get("step", 0))' || echo 0)
    if [ "$done_steps" -ge "$steps" ]; then kill -TERM "$pid"; fi
  done
  wait "$pid" || [ $? -eq 130 ]
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
        print(f"lr {rate}: best {curves[rate][best]:.3f} dB at step {best}, lowest {min(curves[rate].values()):.3f} dB")
PY
