"""Choose the width and training patch of the task defaults on validation, at equal training time.

    python scripts/pilot_defaults.py configs/default_pilot.yaml              (resumable)
    python scripts/pilot_defaults.py configs/default_pilot.yaml --dry-run    (the plan; trains nothing)
    python scripts/pilot_defaults.py configs/default_pilot.yaml --table-only (re-read finished candidates)

Each candidate (the pilot file's `base` with `task` and the candidate's `set` overrides) first has its
seconds per step measured on this machine (a few optimizer steps on random batches of its shape), then
trains `budget_minutes` worth of steps with its cosine schedule annealed over exactly those steps, so every
candidate is compared fully trained within the same time. The step count is fixed in the candidate's run
folder once it starts: a resumed candidate keeps it, even on another CPU. Then `results/defaults/pilot.csv`
lists every candidate, and the winner (best validation PSNR; a candidate listed earlier wins within
`tie_db`) is written to configs/default_shape.yaml, which configs/default_<task>.yaml extend.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from hinet.checkpoint import read_metadata
from hinet.config import TrainConfig, apply_overrides, configure_logging, read_yaml_mapping
from hinet.device import init_distributed, resolve_device, use_bf16
from hinet.errors import HINetError
from hinet.runs import BEST_FILE, CONFIG_FILE, read_run_config, read_state
from hinet.train import train
from hinet.trainer import Trainer

SHAPE_FILE = "default_shape.yaml"  # beside the pilot file; extended by every configs/default_<task>.yaml
PILOT_CSV = "pilot.csv"  # in the runs' parent folder (results/defaults)
TIMING_STEPS = 6  # timed optimizer steps per candidate, after 2 untimed ones
CSV_COLUMNS = (
    "candidate",
    "overrides",
    "seconds_per_step",
    "steps",
    "train_seconds",
    "best_val_psnr",
    "best_step",
    "input_val_psnr",
    "device",
    "precision",
    "status",
)


@dataclass(frozen=True)
class Candidate:
    name: str
    overrides: dict  # dotted config key -> value

    def assignments(self) -> list[str]:
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]


@dataclass(frozen=True)
class Pilot:
    path: Path
    base_file: str  # the base config's name, relative to the pilot file
    base: dict  # the resolved base config mapping
    task: str
    budget_minutes: float
    tie_db: float
    candidates: tuple[Candidate, ...]

    def config(self, candidate: Candidate, steps: int) -> TrainConfig:
        values = dict(self.base, task=self.task, run_name=f"pilot_{candidate.name}", steps=int(steps))
        values["out_dir"] = str(Path(values.get("out_dir", "results/defaults")) / "pilot")
        return TrainConfig.from_dict(apply_overrides(values, candidate.assignments())).validate()

    @property
    def runs_parent(self) -> Path:
        return Path(self.base.get("out_dir", "results/defaults"))


def read_pilot(path: Path) -> Pilot:
    values = read_yaml_mapping(path, "pilot file", "pilot keys (base, task, budget_minutes, tie_db, candidates)")
    missing = [key for key in ("base", "task", "budget_minutes", "candidates") if key not in values]
    if missing:
        raise HINetError(f"{path}: missing {', '.join(missing)}")
    candidates = tuple(Candidate(str(c["name"]), dict(c.get("set", {}))) for c in values["candidates"])
    if len({c.name for c in candidates}) != len(candidates):
        raise HINetError(f"{path}: candidate names must be unique")
    base = read_yaml_mapping(path.parent / values["base"], "config file", "config keys")
    return Pilot(
        path,
        str(values["base"]),
        base,
        str(values["task"]),
        float(values["budget_minutes"]),
        float(values.get("tie_db", 0.1)),
        candidates,
    )


class _RandomBatches:
    """Batches of the right shape and no content: the cost of a step does not depend on the pixels."""

    def __init__(self, cfg: TrainConfig):
        self.shape = (cfg.data.batch, 3, cfg.data.patch, cfg.data.patch)

    def batch(self, cfg, step, rank):
        generator = torch.Generator().manual_seed(step)
        return torch.rand(self.shape, generator=generator), torch.rand(self.shape, generator=generator)


def seconds_per_step(cfg: TrainConfig) -> float:
    """Median seconds of an optimizer step of `cfg` on this machine (model, loss, backward, Adam)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    trainer = Trainer(cfg, device, init_distributed(device))
    trainer.data = _RandomBatches(cfg)
    trainer.use_bf16 = use_bf16(cfg.bf16, device, warn=False)
    times = []
    for step in range(2 + TIMING_STEPS):
        started = time.perf_counter()
        trainer.train_step()
        if step >= 2:
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def planned_steps(pilot: Pilot, candidate: Candidate) -> tuple[int, float | None]:
    """The candidate's step count: the one fixed in its run folder, else the budget over its measured cost."""
    run_dir = pilot.config(candidate, 1).run_dir
    saved = read_run_config(run_dir) if (run_dir / CONFIG_FILE).exists() else None
    if saved is not None:
        return int(saved["steps"]), None
    cost = seconds_per_step(pilot.config(candidate, 1))
    return max(50, int(pilot.budget_minutes * 60 / cost) // 50 * 50), cost


def candidate_row(pilot: Pilot, candidate: Candidate, cost: float | None) -> dict:
    run_dir = pilot.config(candidate, 1).run_dir
    saved = read_run_config(run_dir) if (run_dir / CONFIG_FILE).exists() else None
    state = read_state(run_dir) or {}
    steps = int(saved["steps"]) if saved else None
    best = state.get("best") or {}
    meta = read_metadata(run_dir / BEST_FILE) if (run_dir / BEST_FILE).exists() else {}
    done = steps is not None and int(state.get("step", 0)) >= steps
    if cost is None and steps and state.get("train_seconds"):
        cost = float(state["train_seconds"]) / max(int(state.get("step", 1)), 1)
    return {
        "candidate": candidate.name,
        "overrides": json.dumps(candidate.overrides, sort_keys=True),
        "seconds_per_step": round(cost, 4) if cost else "",
        "steps": steps or "",
        "train_seconds": round(float(state.get("train_seconds", 0.0)), 1),
        "best_val_psnr": round(float(best["psnr"]), 4) if best.get("psnr") is not None else "",
        "best_step": best.get("step", ""),
        "input_val_psnr": round(float(state["input_val"]["psnr"]), 4) if state.get("input_val") else "",
        "device": meta.get("device", ""),
        "precision": meta.get("precision", ""),
        "status": "done" if done else ("partial" if state else "not started"),
    }


def choose(rows: list[dict], tie_db: float) -> dict | None:
    """The best finished candidate by validation PSNR; an earlier (cheaper) one wins within `tie_db`."""
    finished = [row for row in rows if row["status"] == "done" and row["best_val_psnr"] != ""]
    if len(finished) < len(rows):
        return None
    top = max(float(row["best_val_psnr"]) for row in finished)
    return next(row for row in finished if float(row["best_val_psnr"]) >= top - tie_db)


def write_shape(pilot: Pilot, winner: dict, rows: list[dict]) -> Path:
    overrides = json.loads(winner["overrides"])
    values: dict = {}
    for dotted, value in overrides.items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    scores = "; ".join(f"{row['candidate']} {float(row['best_val_psnr']):.2f} dB" for row in rows)
    header = (
        f"# GENERATED by `python scripts/pilot_defaults.py {pilot.path.as_posix()}`: do not edit.\n"
        f"# Winner on validation PSNR ({pilot.task}, {pilot.budget_minutes:g} minutes of training each, tie "
        f"{pilot.tie_db:g} dB to the earlier candidate): {winner['candidate']}.\n# Candidates: {scores}.\n"
        f"# Every candidate's row: {(pilot.runs_parent / PILOT_CSV).as_posix()}.\n"
    )
    target = pilot.path.parent / SHAPE_FILE
    body = yaml.safe_dump({"extends": pilot.base_file, **values}, sort_keys=False)
    target.write_text(header + body)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pilot", type=Path, help="e.g. configs/default_pilot.yaml")
    parser.add_argument("--dry-run", action="store_true", help="list the candidates and their status")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the CSV and the choice")
    args = parser.parse_args(argv)
    configure_logging(0)
    try:
        pilot = read_pilot(args.pilot)
        costs: dict[str, float | None] = {}
        for candidate in pilot.candidates:
            row = candidate_row(pilot, candidate, None)
            print(f"{candidate.name}: {row['status']} ({row['steps'] or '?'} steps)")
            if args.dry_run or args.table_only or row["status"] == "done":
                continue
            steps, costs[candidate.name] = planned_steps(pilot, candidate)
            if costs[candidate.name] is not None:
                print(
                    f"  {costs[candidate.name]:.3f} s/step measured -> {steps} steps for {pilot.budget_minutes:g} min"
                )
            train(pilot.config(candidate, steps))
        if args.dry_run:
            return 0
        rows = [candidate_row(pilot, c, costs.get(c.name)) for c in pilot.candidates]
        table = pilot.runs_parent / PILOT_CSV
        table.parent.mkdir(parents=True, exist_ok=True)
        with open(table, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {table}")
        winner = choose(rows, pilot.tie_db)
        if winner is None:
            print("not every candidate has finished: no choice yet")
            return 0
        print(f"winner: {winner['candidate']} ({winner['best_val_psnr']} dB); wrote {write_shape(pilot, winner, rows)}")
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
