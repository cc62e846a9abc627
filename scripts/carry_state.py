"""Carry half-finished trainings from one session's machine to the next through git.

    python scripts/carry_state.py --keep      (before a session stops: commit the result)
    python scripts/carry_state.py --release   (first thing in a session, after the runs resumed: commit)
    python scripts/carry_state.py             (lists what each would do)

A session's checkout may be a fresh clone: git-ignored weights and optimizer state (`*.safetensors` under
results/runs and results/defaults) are then gone, and a half-finished run could only start over. `--keep`
force-adds the resumable state of every UNFINISHED run (its weights, optimizer moments and best checkpoint,
about 22 MB for a wf16 model) so that the stop's commit carries it; `--release` stops tracking those files
again (they stay on disk), so that ordinary `git add -A` commits never store a new copy of them. Finished
runs never ship their fp32 state: the app opens their fp16 weights (results/models, `weights_fp16`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hinet.runs import (
    BEST_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    PROJECT_ROOT,
    RESULTS_DIR,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    read_run_config,
    read_state,
)

STATE_FILES = (MODEL_FILE, STATE_TENSORS_FILE, BEST_FILE)  # what resuming needs beside train_state.json


def unfinished_runs(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """Run folders under `results_dir` whose saved step is short of their configured steps."""
    runs = []
    for state_file in sorted(results_dir.rglob(STATE_JSON_FILE)):
        run_dir = state_file.parent
        if not (run_dir / CONFIG_FILE).is_file():
            continue
        state, config = read_state(run_dir), read_run_config(run_dir)
        if state is not None and config is not None and int(state["step"]) < int(config.get("steps", 0)):
            runs.append(run_dir)
    return runs


def state_files(run_dirs: list[Path]) -> list[Path]:
    return [run_dir / name for run_dir in run_dirs for name in STATE_FILES if (run_dir / name).is_file()]


def tracked_state_files(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """fp32 state files git tracks now (a previous `--keep`)."""
    listed = _git("ls-files", "--", *(f"{results_dir.relative_to(PROJECT_ROOT)}/**/{name}" for name in STATE_FILES))
    return [PROJECT_ROOT / line for line in listed.splitlines() if line]


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True).stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--keep", action="store_true", help="force-add the state of every unfinished run")
    action.add_argument("--release", action="store_true", help="untrack every fp32 state file (kept on disk)")
    args = parser.parse_args(argv)
    keep = state_files(unfinished_runs())
    release = tracked_state_files()
    size_mb = sum(path.stat().st_size for path in keep) / 2**20
    relative = [str(path.relative_to(PROJECT_ROOT)) for path in keep]
    if args.keep:
        if relative:
            _git("add", "--force", "--", *relative)
        print(f"staged {len(relative)} state files ({size_mb:.1f} MB) of {len(unfinished_runs())} unfinished runs")
    elif args.release:
        names = [str(path.relative_to(PROJECT_ROOT)) for path in release]
        if names:
            _git("rm", "--cached", "--quiet", "--", *names)
        print(f"untracked {len(names)} state files (still on disk)")
    else:
        print(f"--keep would stage {len(relative)} files ({size_mb:.1f} MB):", *relative, sep="\n  ")
        print(f"--release would untrack {len(release)} files:", *release, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
