#!/usr/bin/env bash
# The one heavy background job of a session (scripts/long_runs.sh by default), run from a frozen copy
# of the code so that foreground edits cannot change it halfway, and its progress committed while it runs.
#   scripts/background.sh start [JOB ...]   copy the code to $JOB_COPY, nohup the job there (log: $JOB_LOG)
#   scripts/background.sh stop              one SIGTERM to the training in progress (it saves a checkpoint
#                                           and the job ends with it); waits until the job has ended
#   scripts/background.sh save              stop, commit the fp32 state (carry_state.py --keep), untrack it
#                                           again (--release) and commit that, then start the job again
#                                           from the same frozen copy (a stopped job stays stopped)
#   scripts/background.sh status            is it running, and the last lines of its log
# `save` every hour or so: a session can stop without warning, and a fresh checkout has none of the
# git-ignored weights, so whatever was trained since the last `save` is lost (it happened: see
# results/archive/defaults_weights_lost; on a fresh clone `scripts/carry_state.py --restore` writes the
# saved state back). It refuses while anything else is staged, so its commits hold
# only the state, and each one costs the repository a copy of it (~16-22 MB per run).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
python="${PYTHON:-$root/.venv/bin/python}"
copy="${JOB_COPY:-/tmp/hinet_job}"
log="${JOB_LOG:-/tmp/hinet_job.log}"
job_file="$copy.job"  # the job's command line, for `save` to start the same job again
# The processes that train and save a checkpoint on SIGTERM, among the job's descendants only (another
# training on the machine is left alone).
training_pattern='-m hinet\.(train|sweep) |scripts/pilot_defaults\.py '

job_pids() { pgrep -f "^bash $copy/scripts/" || true; }

descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

job_trainers() {
  local job pid
  for job in $(job_pids); do
    for pid in $(descendants "$job"); do
      tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -qE -- "$training_pattern" && echo "$pid"
    done
  done | sort -u  # a trainer seen twice would get two signals, and a second one makes it quit unsaved
  return 0
}

start() {
  if [ -n "$(job_pids)" ]; then
    echo "a background job is already running (pid $(job_pids | tr '\n' ' ')); stop it first" >&2
    exit 1
  fi
  local job=("$@")
  [ ${#job[@]} -gt 0 ] || job=(scripts/long_runs.sh)
  if [[ "${job[0]}" != scripts/* ]]; then  # job_pids recognises the job by that path
    echo "the job must be a script under scripts/ (got ${job[0]})" >&2
    exit 2
  fi
  if [ ! -x "$root/${job[0]}" ]; then
    echo "no executable script ${job[0]} in $root" >&2
    exit 2
  fi
  rm -rf "$copy" && mkdir -p "$copy"
  tar --exclude=./.venv --exclude=./results --exclude=./configs --exclude=./.git -cf - . | tar -xf - -C "$copy"
  # results and configs are shared with the checkout: runs land in it, and pilots write configs there
  ln -s "$root/results" "$copy/results"
  ln -s "$root/configs" "$copy/configs"
  printf '%s\n' "${job[@]}" > "$job_file"
  launch "${job[@]}"
}

# The job from the frozen copy as it is (`save` restarts it so: the checkout may hold edits in progress).
launch() {
  # Detached in a session of its own, holding none of this shell's file descriptors (a caller reading
  # this script's output through a pipe would otherwise wait for the job to end).
  OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" OMP_WAIT_POLICY=PASSIVE PYTHON="$python" "$python" -c '
import subprocess, sys
copy, log, job = sys.argv[1], sys.argv[2], sys.argv[3:]
with open(log, "ab") as out:
    subprocess.Popen(["bash", f"{copy}/{job[0]}", *job[1:]], cwd=copy, stdin=subprocess.DEVNULL, stdout=out,
                     stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)' "$copy" "$log" "$@"
  sleep 2
  echo "started $* from $copy (log: $log)"
}

stop() {
  local trainers pid signalled=" "
  if [ -z "$(job_pids)" ]; then
    echo "no background job running"
    return 0
  fi
  for _ in $(seq 30); do  # between two trainings for a moment: wait for the next one to start
    trainers="$(job_trainers)"
    [ -n "$trainers" ] && break
    sleep 1
  done
  if [ -z "$trainers" ]; then  # a job that does not train: its whole process group (its own session)
    kill -TERM -- $(job_pids | sed 's/^/-/') 2>/dev/null || true
  fi
  for _ in $(seq 600); do
    [ -z "$(job_pids)" ] && break
    # One signal per trainer: a second one makes it quit without saving. Trainers seen later are signalled
    # too (a signal that reached a finished run only reporting could let the job start the next one).
    for pid in $(job_trainers); do
      case "$signalled" in *" $pid "*) continue ;; esac
      kill -TERM "$pid" 2>/dev/null || true
      signalled+="$pid "
    done
    sleep 1
  done
  if [ -n "$(job_pids)" ]; then
    echo "the job has not ended 10 minutes after the stop signal; see $log" >&2
    exit 1
  fi
  echo "stopped (last log lines of $log):"
  tail -n 3 "$log" 2>/dev/null || true
}

save() {
  if ! git diff --cached --quiet; then
    echo "something is staged already; commit or unstage it first (save commits only the training state)" >&2
    exit 1
  fi
  local was_running=""
  [ -z "$(job_pids)" ] || was_running=yes
  stop
  if ! commit_state; then
    echo "WARNING: the training state was NOT committed (see above); fix that, then save again" >&2
  fi
  if [ -z "$was_running" ]; then  # stopped on purpose (a quiet CPU for an evaluation): it stays stopped
    echo "the job was not running: not restarted"
  elif [ -f "$job_file" ] && [ -d "$copy" ]; then
    mapfile -t job < "$job_file"
    launch "${job[@]}"
  else
    start
  fi
}

# carry_state --keep, commit, --release, commit; each step's failure returns non-zero (`set -e` does not
# apply inside a function called as a condition, hence the explicit returns).
commit_state() {
  local message
  "$python" scripts/carry_state.py --keep || return 1
  git diff --cached --quiet && return 0
  message="$("$python" - <<'PY'
import json, subprocess
staged = subprocess.run(["git", "diff", "--cached", "--name-only"], capture_output=True, text=True).stdout
runs = sorted({line.rsplit("/", 1)[0] for line in staged.splitlines() if line.endswith("train_state.json")})
print(", ".join(f"{run} at step {json.load(open(run + '/train_state.json'))['step']}" for run in runs) or "state only")
PY
)" || return 1
  git commit --quiet -m "Carry the background trainings' state: $message" || return 1
  "$python" scripts/carry_state.py --release || return 1
  git commit --quiet -m "Untrack the carried training state again (kept on disk for resuming)" || return 1
  git log --oneline -2
}

case "${1:-status}" in
  start) shift; start "$@" ;;
  stop) stop ;;
  save) save ;;
  status)
    if [ -n "$(job_pids)" ]; then echo "running: $(cat "$job_file" 2>/dev/null | tr '\n' ' ')"; else echo "not running"; fi
    tail -n 3 "$log" 2>/dev/null || true
    ;;
  *) echo "usage: scripts/background.sh start [JOB ...] | stop | save | status" >&2; exit 2 ;;
esac
