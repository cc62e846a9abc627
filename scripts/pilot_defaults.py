"""Choose settings of the task defaults on validation, at equal training time: the width and training patch
(configs/default_pilot.yaml), then the learning rate (configs/default_lr_pilot.yaml).

    python scripts/pilot_defaults.py configs/default_pilot.yaml              (resumable)
    python scripts/pilot_defaults.py configs/default_pilot.yaml --dry-run    (the plan; trains nothing)
    python scripts/pilot_defaults.py configs/default_pilot.yaml --table-only (re-read finished candidates)

Each candidate (the pilot file's `base` with `task` and the candidate's `set` overrides) trains
`budget_minutes` worth of steps with its cosine schedule annealed over exactly those steps, so every
candidate is compared fully trained within the same time. The seconds per step come from one measurement of
all candidates together (optimizer steps on random batches of each shape, interleaved round by round, so a
busy machine slows them alike), saved in `results/defaults/<name>/costs.json` before the first candidate
trains. A candidate whose step count was fixed earlier (a run folder from before that file existed) is the
reference: the others' costs are scaled by its fixed cost over its cost in the joint measurement. The step
count is fixed in the candidate's run folder once it starts: a resumed candidate keeps it, even on another
CPU. Then `results/defaults/<name>.csv` lists every candidate, and the winner (best validation PSNR; a
candidate listed earlier wins within `tie_db`) is written to the pilot's `writes` file beside it (the first
pilot: configs/default_shape.yaml; the second: configs/default_lr.yaml, which the task defaults extend).
A pilot file names its `name` (runs folder and table; default "pilot"), `title`, `writes`, `base`, `task`,
`budget_minutes`, `tie_db` and `candidates`; `equal_cost: true` gives every candidate the mean measured cost
(for candidates that differ in nothing that costs time, such as the learning rate).
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
from hinet.io import atomic_write_text
from hinet.runs import BEST_FILE, CONFIG_FILE, read_run_config, read_state
from hinet.train import STOPPED_EXIT, stop_on_signals, train
from hinet.trainer import Trainer, segments_label

SHAPE_FILE = "default_shape.yaml"  # a pilot's default `writes`: the file (beside it) its winner goes to
DEFAULT_NAME = "pilot"  # a pilot's default `name`: its runs in results/defaults/<name>/, its table <name>.csv
COSTS_FILE = "costs.json"  # in the pilot's runs folder: the joint measurement every step count comes from
TIMING_STEPS = 8  # timed optimizer steps per candidate (interleaved rounds), after 2 untimed ones
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
    name: str = DEFAULT_NAME
    writes: str = SHAPE_FILE
    title: str = "pilot"
    equal_cost: bool = False  # the candidates differ in nothing that costs time (e.g. the learning rate)

    def config(self, candidate: Candidate, steps: int) -> TrainConfig:
        values = dict(self.base, task=self.task, run_name=f"pilot_{candidate.name}", steps=int(steps))
        values["out_dir"] = str(self.runs_dir)
        return TrainConfig.from_dict(apply_overrides(values, candidate.assignments())).validate()

    @property
    def runs_parent(self) -> Path:
        return Path(self.base.get("out_dir", "results/defaults"))

    @property
    def runs_dir(self) -> Path:
        """The candidates' run folders and the cost measurement live here."""
        return self.runs_parent / self.name

    @property
    def table_path(self) -> Path:
        return self.runs_parent / f"{self.name}.csv"

    @property
    def output_path(self) -> Path:
        return self.path.parent / self.writes

    @property
    def costs_path(self) -> Path:
        return self.runs_dir / COSTS_FILE


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
        str(values.get("name", DEFAULT_NAME)),
        str(values.get("writes", SHAPE_FILE)),
        str(values.get("title", "pilot")),
        bool(values.get("equal_cost", False)),
    )


class _RandomBatches:
    """Batches of the right shape and no content: the cost of a step does not depend on the pixels."""

    def __init__(self, cfg: TrainConfig):
        self.shape = (cfg.data.batch, 3, cfg.data.patch, cfg.data.patch)

    def batch(self, cfg, step, rank):
        generator = torch.Generator().manual_seed(step)
        return torch.rand(self.shape, generator=generator), torch.rand(self.shape, generator=generator)


def measure_costs(configs: dict[str, TrainConfig]) -> dict[str, float]:
    """Median seconds of an optimizer step (model, loss, backward, Adam) of each config on this machine,
    measured in interleaved rounds (one step of each config per round) so that load from other processes
    falls on all of them alike."""
    trainers = {}
    for name, cfg in configs.items():
        device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        trainer = Trainer(cfg, device, init_distributed(device))
        trainer.data = _RandomBatches(cfg)
        trainer.use_bf16 = use_bf16(cfg.bf16, device, warn=False)
        trainers[name] = trainer
    times: dict[str, list[float]] = {name: [] for name in configs}
    for round_index in range(2 + TIMING_STEPS):
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.train_step()
            if round_index >= 2:
                times[name].append(time.perf_counter() - started)
    return {name: sorted(values)[len(values) // 2] for name, values in times.items()}


def _fixed_steps(pilot: Pilot, candidate: Candidate) -> int | None:
    run_dir = pilot.config(candidate, 1).run_dir
    saved = read_run_config(run_dir) if (run_dir / CONFIG_FILE).exists() else None
    return None if saved is None else int(saved["steps"])


def _steps_for(pilot: Pilot, cost: float) -> int:
    return max(50, int(pilot.budget_minutes * 60 / cost) // 50 * 50)


def candidate_costs(pilot: Pilot) -> dict[str, float]:
    """Seconds per step of every candidate, from `COSTS_FILE` (measured once, then read back)."""
    path = pilot.costs_path
    candidates = {c.name: c.overrides for c in pilot.candidates}
    if path.is_file():
        saved = json.loads(path.read_text())
        # reused only for the very candidates it measured (same names and overrides), else measured again
        if saved.get("candidates") == candidates:
            return {name: float(cost) for name, cost in saved["seconds_per_step"].items()}
    measured = measure_costs({c.name: pilot.config(c, 1) for c in pilot.candidates})
    fixed = {c.name: steps for c in pilot.candidates if (steps := _fixed_steps(pilot, c)) is not None}
    # A fixed candidate's cost is the one its steps were planned with (up to the rounding to 50 steps).
    ratios = [pilot.budget_minutes * 60 / steps / measured[name] for name, steps in fixed.items()]
    scale = sum(ratios) / len(ratios) if ratios else 1.0
    costs = {name: cost * scale for name, cost in measured.items()}
    if pilot.equal_cost:  # one cost for all: what separates their measurements is timing noise
        costs = dict.fromkeys(costs, sum(costs.values()) / len(costs))
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "candidates": candidates,
        "equal_cost": pilot.equal_cost,
        "measured_seconds_per_step": measured,
        "reference": sorted(fixed),
        "scale": scale,
        "seconds_per_step": costs,
        "timing_steps": TIMING_STEPS,
    }
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    return costs


def planned_steps(pilot: Pilot) -> dict[str, int]:
    """Every candidate's step count: the one fixed in its run folder, else the budget over its cost."""
    fixed = {c.name: _fixed_steps(pilot, c) for c in pilot.candidates}
    if all(steps is not None for steps in fixed.values()):
        return {name: int(steps) for name, steps in fixed.items() if steps is not None}
    costs = candidate_costs(pilot)
    return {name: steps if steps is not None else _steps_for(pilot, costs[name]) for name, steps in fixed.items()}


def candidate_row(pilot: Pilot, candidate: Candidate) -> dict:
    run_dir = pilot.config(candidate, 1).run_dir
    costs_file = pilot.costs_path
    costs = json.loads(costs_file.read_text())["seconds_per_step"] if costs_file.is_file() else {}
    cost = costs.get(candidate.name)
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
        # the weights file is not carried between sessions; the state's training stretches are
        "device": meta.get("device") or segments_label(state.get("segments", []), "device"),
        "precision": meta.get("precision") or segments_label(state.get("segments", []), "precision"),
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
        f"# Every candidate's row: {pilot.table_path.as_posix()}.\n"
    )
    target = pilot.output_path
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
        rows = [candidate_row(pilot, c) for c in pilot.candidates]
        for candidate, row in zip(pilot.candidates, rows):
            print(f"{candidate.name}: {row['status']} ({row['steps'] or '?'} steps)")
        if args.dry_run:
            return 0
        if not args.table_only and any(row["status"] != "done" for row in rows):
            steps = planned_steps(pilot)
            print(
                "steps for " + f"{pilot.budget_minutes:g} min each: " + ", ".join(f"{k} {v}" for k, v in steps.items())
            )
            should_stop = stop_on_signals()  # Ctrl-C / SIGTERM: the candidate saves a checkpoint, then we stop
            for candidate, row in zip(pilot.candidates, rows):
                if (
                    row["status"] != "done"
                    and train(pilot.config(candidate, steps[candidate.name]), should_stop=should_stop)["stopped"]
                ):
                    print(f"stopped during {candidate.name}; run the same command again to resume it")
                    return STOPPED_EXIT
        rows = [candidate_row(pilot, c) for c in pilot.candidates]
        table = pilot.table_path
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
