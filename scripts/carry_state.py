"""Carry half-finished trainings from one session's machine to the next through git.

    python scripts/carry_state.py --keep      (before a session stops, trainings stopped: commit the result)
    python scripts/carry_state.py --release   (first thing in a session, after the runs resumed: commit)
    python scripts/carry_state.py --restore   (a fresh clone after a mid-session save: state from history)
    python scripts/carry_state.py             (lists what each would do)

A session's checkout may be a fresh clone: git-ignored weights and optimizer state (`*.safetensors` under
results/runs and results/defaults) are then gone, and a half-finished run could only start over. `--keep`
force-adds the fp32 state (weights, optimizer moments, best checkpoint: about 22 MB for a wf16 model; a file
over 8 MiB as numbered `.partNN` pieces, which `--release` joins again) of every run that still needs it,
together with its train_state.json, config and log so that they come from one checkpoint: an unfinished run
(not the early learning-rate checks of scripts/early_lr_check.sh, stopped on purpose); a finished ablation
run not scored yet (no eval.csv; learning-rate search runs are never scored, so a finished one does not
carry); a finished task default (results/defaults/<task>) that no shipped model names as its source, or
whose `configs/default_<task>.yaml` now plans more steps than it has done. Runs that failed never carry.
It refuses while a training process runs: stop it first (`python -m hinet.train`, `python -m hinet.sweep`
and the pilot save a checkpoint on SIGTERM). `--release`
stops tracking those files again (they stay on disk), so that ordinary `git add -A` commits never store a
new copy of them. Finished and delivered runs never ship fp32 state: the app opens their fp16 weights.
`scripts/background.sh save` does both mid-session, so its state lives only in the history; on a fresh clone
`--restore` writes it back (with its train_state.json, config and log, from the same commit) for every run
that lacks it, when it is the same run (the committed log continues the kept one), and stages nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from hinet.runs import (
    BEST_FILE,
    CONFIG_FILE,
    CONFIGS_DIR,
    DATA_FILE,
    DEFAULTS_DIR,
    EVAL_FILE,
    FAILED_FILE,
    LOG_FILE,
    LR_CHECK_SUFFIX,
    MODEL_FILE,
    PROJECT_ROOT,
    RESULTS_DIR,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    planned_steps,
    read_run_config,
    read_state,
    results_runs_dir,
    shipped_source_runs,
)
from hinet.sweep import LR_SEARCH_PREFIX

STATE_FILES = (MODEL_FILE, STATE_TENSORS_FILE, BEST_FILE)  # git-ignored; what resuming needs
COMPANION_FILES = (STATE_JSON_FILE, CONFIG_FILE, LOG_FILE, DATA_FILE)  # tracked; staged with them
CARRIED_PARENTS = ("runs", DEFAULTS_DIR)  # the folders of results/ that hold run folders
TRAINING_PROCESSES = r"hinet\.train|hinet\.sweep|pilot_defaults\.py|hinet-train|hinet-sweep"


def runs_to_carry(results_dir: Path = RESULTS_DIR, configs_dir: Path = CONFIGS_DIR) -> list[Path]:
    """Run folders under `results_dir` whose fp32 state is still needed (see the module docstring)."""
    shipped = shipped_source_runs(results_dir)
    defaults_dir = (results_dir / DEFAULTS_DIR).resolve()
    runs = []
    for state_file in sorted(results_dir.rglob(STATE_JSON_FILE)):
        run_dir = state_file.parent
        if not (run_dir / CONFIG_FILE).is_file() or (run_dir / FAILED_FILE).exists():
            continue
        if run_dir.parent.name.endswith(LR_CHECK_SUFFIX):  # stopped early by design; only their logs matter
            continue
        state, config = read_state(run_dir), read_run_config(run_dir)
        if state is None or config is None:
            continue
        unfinished = int(state["step"]) < planned_steps(run_dir, config, defaults_dir, configs_dir)
        unscored = (
            run_dir.parent.resolve() == results_runs_dir(results_dir).resolve()
            and not run_dir.name.startswith(LR_SEARCH_PREFIX)
            and not (run_dir / EVAL_FILE).is_file()
        )
        unshipped = run_dir.parent.resolve() == defaults_dir and run_dir.resolve() not in shipped
        if unfinished or unscored or unshipped:
            runs.append(run_dir)
    return runs


def state_files(run_dirs: list[Path]) -> list[Path]:
    return [run_dir / name for run_dir in run_dirs for name in STATE_FILES if (run_dir / name).is_file()]


def companion_files(run_dirs: list[Path]) -> list[Path]:
    return [run_dir / name for run_dir in run_dirs for name in COMPANION_FILES if (run_dir / name).is_file()]


def tracked_state_files(results_dir: Path = RESULTS_DIR) -> list[Path]:
    """fp32 state files git tracks now (a previous `--keep`)."""
    base = results_dir.resolve().relative_to(PROJECT_ROOT)
    patterns = [
        f"{base}/{parent}/**/{name}{suffix}"
        for parent in CARRIED_PARENTS
        for name in STATE_FILES
        for suffix in ("", f"{PART_SUFFIX}*")
    ]
    listed = _git("ls-files", "--", *patterns)
    return [PROJECT_ROOT / line for line in listed.splitlines() if line]


def running_trainings() -> list[str]:
    found = subprocess.run(["pgrep", "-af", TRAINING_PROCESSES], capture_output=True, text=True).stdout
    return [line for line in found.splitlines() if line and not line.startswith(f"{os.getpid()} ")]


PART_BYTES = 8 * 2**20  # git is kept free of files over 10 MiB: a larger state file travels in parts
PART_SUFFIX = ".part"  # <file>.part00, <file>.part01, ...: force-added instead of <file>


def split_large(paths: list[Path]) -> list[Path]:
    """`paths` as they are committed: each file over PART_BYTES written as numbered parts beside it (the
    parts replace it in the list; the file itself stays on disk, git-ignored)."""
    committed = []
    for path in paths:
        for stale in path.parent.glob(f"{path.name}{PART_SUFFIX}*"):
            stale.unlink()
        if path.stat().st_size <= PART_BYTES:
            committed.append(path)
            continue
        data = path.read_bytes()
        for index, start in enumerate(range(0, len(data), PART_BYTES)):
            part = path.with_name(f"{path.name}{PART_SUFFIX}{index:02d}")
            part.write_bytes(data[start : start + PART_BYTES])
            committed.append(part)
    return committed


def join_parts(parts: list[Path]) -> list[Path]:
    """Rebuild each file whose parts are listed (a fresh clone has only the parts), then delete the parts;
    returns the files rebuilt."""
    by_file: dict[Path, list[Path]] = {}
    for part in parts:
        by_file.setdefault(part.with_name(part.name.rsplit(PART_SUFFIX, 1)[0]), []).append(part)
    for target, pieces in by_file.items():
        data = b"".join(piece.read_bytes() for piece in sorted(pieces))
        target.with_name(target.name + ".tmp").write_bytes(data)
        target.with_name(target.name + ".tmp").replace(target)
        for piece in pieces:
            piece.unlink()
    return sorted(by_file)


def _git(*args: str, repo: Path = PROJECT_ROOT) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def _show(repo: Path, commit: str, name: str) -> bytes:
    return subprocess.run(["git", "show", f"{commit}:{name}"], cwd=repo, check=True, capture_output=True).stdout


def restore_from_history(run_dirs: list[Path], repo: Path = PROJECT_ROOT) -> dict[Path, str]:
    """Write back the fp32 state of each run that lacks it on disk from the last commit that added or changed
    it (a `--keep`, also one made before the previous one was released), with the companions of that commit
    so that all come from one checkpoint; returns each restored run's commit. A run whose log on disk does
    not continue the kept log is another run that reused the folder (the kept one was abandoned): it is
    left alone."""
    restored = {}
    for run_dir in run_dirs:
        if (run_dir / STATE_TENSORS_FILE).is_file():
            continue
        relative = run_dir.resolve().relative_to(repo.resolve()).as_posix()
        specs = [f"{relative}/{name}{suffix}" for name in STATE_FILES for suffix in ("", f"{PART_SUFFIX}*")]
        commit = _git("log", "-1", "--format=%H", "--diff-filter=AM", "--", *specs, repo=repo).strip()
        if not commit:
            continue
        listed = _git("ls-tree", "--name-only", commit, f"{relative}/", repo=repo).splitlines()
        carried = [name for name in listed if Path(name).name.split(PART_SUFFIX)[0] in STATE_FILES + COMPANION_FILES]
        log, kept_log = run_dir / LOG_FILE, f"{relative}/{LOG_FILE}"
        if kept_log in carried and log.is_file() and not log.read_bytes().startswith(_show(repo, commit, kept_log)):
            continue  # another run reused the folder
        for name in carried:
            (repo / name).write_bytes(_show(repo, commit, name))
        join_parts([repo / name for name in carried if PART_SUFFIX in Path(name).name])
        restored[run_dir] = commit
    return restored


def _relative(paths: list[Path]) -> list[str]:
    return [str(path.resolve().relative_to(PROJECT_ROOT)) for path in paths]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--keep", action="store_true", help="force-add the state of every run that needs it")
    action.add_argument("--release", action="store_true", help="untrack every fp32 state file (kept on disk)")
    action.add_argument(
        "--restore", action="store_true", help="write back from history the state runs lack on disk (fresh clone)"
    )
    parser.add_argument("--force", action="store_true", help="--keep even while a training process runs")
    args = parser.parse_args(argv)
    runs = runs_to_carry()
    keep = state_files(runs)
    size_mb = sum(path.stat().st_size for path in keep) / 2**20
    if args.keep or args.restore:
        running = running_trainings()
        if running and not args.force:
            print(
                "error: a training is running, so its files may come from different checkpoints; stop it "
                "(kill -TERM <pid>; hinet.train saves a checkpoint first) and run this again:\n  "
                + "\n  ".join(running),
                file=sys.stderr,
            )
            return 2
        if args.restore:
            restored = restore_from_history(runs)
            for run_dir, commit in restored.items():
                step = (read_state(run_dir) or {}).get("step")
                print(f"restored {_relative([run_dir])[0]} at step {step} from commit {commit[:10]}")
            print(f"restored {len(restored)} runs (nothing staged: the files are git-ignored)")
            return 0
        if keep:
            _git("add", "--force", "--", *_relative(split_large(keep) + companion_files(runs)))
        print(f"staged {len(keep)} state files ({size_mb:.1f} MB) of {len(runs)} runs")
    elif args.release:
        tracked = tracked_state_files()
        names = _relative(tracked)
        if names:
            _git("rm", "--cached", "--quiet", "--", *names)
        rebuilt = join_parts([path for path in tracked if PART_SUFFIX in path.name])
        print(f"untracked {len(names)} state files (still on disk; {len(rebuilt)} rebuilt from their parts)")
    else:
        print(f"--keep would stage {len(keep)} files ({size_mb:.1f} MB):", *_relative(keep), sep="\n  ")
        print("--release would untrack:", *_relative(tracked_state_files()), sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
