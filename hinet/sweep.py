"""Run an ablation grid and tabulate it: `python -m hinet.sweep configs/ablation_*.yaml [--only PATTERN] [--dry-run]`.

A grid file is a base `TrainConfig` plus axes; every run gets the same training budget (steps, patch,
batch, data), so the variants differ only in their model knobs:

    ablation: norm                       # name used in run folders and the table
    budget: "..."                        # free text: what one run costs, for readers of the file
    baseline: hin                        # the variant the others are compared with (informational)
    seeds: [0, 1, 2]
    tasks:                               # a task name, or {task, strength}
      - {task: denoise, strength: {sigma: 25}}
      - deblur
    variants:                            # {name, variant (registry name, optional), model (HINetConfig overrides)}
      - {name: hin, variant: small_hin}
      - {name: none, variant: small_hin, model: {norm: none}}
    base: {...}                          # a TrainConfig without run_name, out_dir, seed, task, strength

Each run trains into `<results>/runs/<ablation>__<task>__<variant>__s<seed>/` (a finished run is
skipped, a half-finished one resumes), is evaluated on the test set (`hinet.evaluate.evaluate_model` on
`data.test_images()`, degradation seed 0) into its `eval.csv`, and its costs go to `sweep.json`
(parameters, MACs at 256x256, latency of one 256x256 forward on this machine). Every run is scored under
the three test-time statistics protocols (`hinet.inference.STATS_PROTOCOLS`: whole image, tiles of the
training patch, local windows); a run scored before protocols existed is scored again. `<results>/ablation.csv`
is then rebuilt from every run folder, so it always matches the runs on disk.

With `lr_search: {lrs: [...], steps: N, seed: S}` the sweep first trains every (task, variant) at each
candidate learning rate (validation only, never the test set), writes `<results>/lr_search.csv`, and
trains the grid's runs with each variant's best rate.

The budget ladder spreads one comparison over several grid files that differ in `base.steps`:

    lr_from: ablation_norm_3k.yaml           # use that grid's search choice for (task, variant name);
                                             # also per variant; such variants are not searched again
    ship_seeds: [0]                          # these seeds' final weights are kept in git as fp16
                                             # (`<run>/weights_fp16.safetensors`, opened by the app)
    best_other: {from: <grid>, exclude: [hin, batch]}   # add, per task, the variant of <grid> with the
                                             # best mean validation PSNR (never the test set)
    variants:
      - {name: hin_p128, variant: small_hin, train: {data: {patch: 128, batch: 2}}}  # training overrides
      - {name: hin, variant: small_hin, lr_from: <grid>, ship: false}                # same run as <grid>'s

Grid files named inside a grid file are relative to its folder. Runs are ordered seed by seed (every variant's first seed before any second seed), and grids one after
the other, so a stopped sweep leaves a complete first seed rather than three seeds of a few variants. A
run whose training equals a finished run of another grid is copied (with its scores when that run was
scored; the weights are git-ignored, so on a fresh clone only the scores survive).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from hinet import data
from hinet.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from hinet.complexity import count_macs, count_parameters
from hinet.config import TrainConfig, bounded, configure_logging, from_mapping, read_yaml_mapping
from hinet.data import format_level, validate_strength
from hinet.device import describe_device, precision_label, resolve_device, use_bf16
from hinet.errors import ConfigError, HINetError, TrainingDiverged
from hinet.evaluate import MODEL_METHOD, evaluate_model, write_csv
from hinet.inference import FAST_PATH, STATS_PROTOCOLS, eval_mode, run_model
from hinet.io import atomic_write_bytes, atomic_write_text
from hinet.metrics import default_protocol
from hinet.model import HINet
from hinet.results_table import ABLATION_COLUMNS
from hinet.runs import (
    ABLATION_FILE,
    CONFIG_FILE,
    DATA_FILE,
    EVAL_FILE,
    FAILED_FILE,
    MODEL_FILE,
    PROJECT_ROOT,
    RUN_INFO_FILE,
    SHIPPED_WEIGHTS_FILE,
    STAGING_DIR,
    STATE_JSON_FILE,
    STATE_TENSORS_FILE,
    read_run_config,
    read_state,
    results_runs_dir,
    run_folders,
)
from hinet.train import STOPPED_EXIT, stop_on_signals, train
from hinet.training_data import use_photos

log = logging.getLogger(__name__)

STOPPED = "stopped"  # the report status of the run a stop request interrupted (it resumes next sweep)
LR_SEARCH_PREFIX = "lr-"  # the name of every learning-rate search run starts with it; they are never scored
LR_SEARCH_FILE = "lr_search.csv"  # in the results folder: every candidate learning rate and the choice
LR_SEARCH_COLUMNS = (
    "ablation",
    "task",
    "variant",
    "lr",
    "steps",
    "seed",
    "run",
    "status",
    "best_val_psnr",
    "best_step",
    "chosen",
)
WEIGHTLESS = "trained, weights not kept: cannot be scored under the missing protocols"
RETRAIN_TO_SHIP = "retrain to ship: scored, but the weights to ship were not kept"
# A partly trained run whose checkpoint is gone (git keeps its state file and log, not its weights): a fresh
# checkout of a run that was stopped. It cannot resume, so it starts over.
RESTART = "restart: partly trained, but its checkpoint was not kept"
LATENCY_SIZE = 256
# The normalization budget ladder in its priority order (`python -m hinet.sweep --ladder`): the 3k rung,
# the 300 and 1k rungs, knob separation, training patch size, placement, then the 10k rung.
LADDER_GRIDS = tuple(
    f"configs/ablation_{name}.yaml"
    for name in ("norm_3k", "norm_300", "norm_1k", "knobs_3k", "patch_3k", "placement_3k", "norm_10k")
)
VARIANT_KEYS = ("name", "variant", "model", "lr_from", "train", "ship")
SWEEP_SETS = ("run_name", "out_dir", "seed", "task", "strength")  # TrainConfig keys a grid's base must not set


@dataclass(kw_only=True)
class LrSearch:
    """A grid's `lr_search`: every (task, variant) trained at each rate of `lrs` before the grid's runs."""

    lrs: list[float] = bounded(expects="a list of numbers")
    steps: int | None = bounded(None, expects="a positive integer")  # None = the base's steps
    seed: int | None = bounded(None, expects="an integer")  # None = the grid's first seed
    val_every: int | None = bounded(None, expects="a non-negative integer")  # None = the base's


@dataclass(kw_only=True)
class Grid:
    """A grid file, checked by the machinery that checks TrainConfig (`hinet.config.from_mapping`)."""

    ablation: str
    budget: str = ""  # free text: what one run costs, for readers of the file
    baseline: str | None = None  # the variant the others are compared with (informational)
    seeds: list[int] = bounded(expects="a list of integers")
    tasks: list = bounded(expects="a list of task names or {task, strength}")
    variants: list = bounded(expects="a non-empty list of {name, variant, model}")
    base: dict | None = None  # a TrainConfig without the keys in SWEEP_SETS
    eval_seed: int = 0
    lr_search: LrSearch | None = bounded(None, expects="a mapping with lrs (and optional steps, seed, val_every)")
    lr_from: str | None = None  # a grid file whose search gives every variant its rate (also per variant)
    ship_seeds: list[int] | None = bounded(None, expects="a list of integers")  # None = ship nothing
    best_other: dict | None = None  # {from: <grid file>, exclude: [names]}: see `_best_other`


@dataclass
class PlannedRun:
    name: str
    ablation: str
    variant: str
    task: str
    strength: dict
    seed: int
    config: TrainConfig
    eval_seed: int = 0
    lr_pending: bool = False  # the grid searches learning rates and this variant's search is unfinished
    ship: bool = False  # keep the final weights in git (SHIPPED_WEIGHTS_FILE)
    waiting: str = ""  # why the run cannot be planned yet (e.g. a variant chosen from an unfinished grid)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    def status(self) -> str:
        """ "done" (trained and evaluated), "evaluate" (trained), "resume" (partly trained) or "new"; "ship" or
        RETRAIN_TO_SHIP for a scored run whose fp16 weights to ship are missing; "waiting..." when unplanned."""
        if self.waiting:
            return f"waiting: {self.waiting}"
        if self.lr_pending:
            return "waiting for its learning-rate search"
        state = read_state(self.run_dir)
        if (self.run_dir / FAILED_FILE).is_file():
            return "failed"
        if state is None:
            return "new"
        if state["step"] < self.config.steps:
            intact = all((self.run_dir / name).is_file() for name in (MODEL_FILE, STATE_TENSORS_FILE))
            return "resume" if intact else RESTART
        if scored_protocols(self.run_dir) >= set(STATS_PROTOCOLS) and (self.run_dir / RUN_INFO_FILE).is_file():
            if self.ship and not (self.run_dir / SHIPPED_WEIGHTS_FILE).is_file():
                return "ship" if (self.run_dir / MODEL_FILE).is_file() else RETRAIN_TO_SHIP
            return "done"
        if not (self.run_dir / MODEL_FILE).is_file():
            return WEIGHTLESS  # trained elsewhere, weights not kept (git-ignored): nothing can score it again
        return "evaluate"


def scored_protocols(run_dir: Path) -> set[str]:
    """The stats protocols the run's `eval.csv` holds model rows for (an eval.csv from before protocols
    counts as "whole" only, so such runs are scored again under the others)."""
    path = Path(run_dir) / EVAL_FILE
    if not path.is_file():
        return set()
    with open(path, newline="") as handle:
        return {row.get("stats") or "whole" for row in csv.DictReader(handle) if row["method"] == MODEL_METHOD}


def read_grid(path: str | os.PathLike) -> Grid:
    """The grid file at `path`, checked; a bad grid is a ConfigError naming the file."""
    path = Path(path)
    try:
        grid = from_mapping(Grid, read_yaml_mapping(path, "grid file", "grid keys"), kind="grid")
    except ConfigError as error:
        message = str(error)
        raise ConfigError(message if str(path) in message else f"{path}: {message}") from None
    base = grid.base or {}
    for reserved in SWEEP_SETS:
        if reserved in base:
            raise ConfigError(f"{path}: base.{reserved} is set by the sweep; remove it from the base config")
    if not grid.seeds:
        raise ConfigError(f"{path}: seeds must be a list of integers; got {grid.seeds!r}")
    if not grid.variants:
        raise ConfigError(f"{path}: variants must be a non-empty list of {{name, variant, model}}")
    names = [v.get("name") if isinstance(v, dict) else None for v in grid.variants]
    if any(not isinstance(n, str) or not n for n in names) or len(set(names)) != len(names):
        raise ConfigError(f"{path}: every variant needs a unique name; got {', '.join(map(repr, names))}")
    if grid.baseline is not None and grid.baseline not in names:
        raise ConfigError(
            f"{path}: baseline {grid.baseline!r} is not one of the variants ({', '.join(map(str, names))})"
        )
    return grid


def plan(grid_path: str | os.PathLike, results_dir: str | os.PathLike = "results") -> list[PlannedRun]:
    """Every run of a grid file, with its resolved TrainConfig (raises ConfigError for a bad grid).

    When the grid has `lr_search`, each (task, variant) trains with the learning rate its search chose
    (`lr_choices`); until that search is finished its runs are `lr_pending`."""
    return _plan(grid_path, results_dir, search=False)


def plan_lr_search(grid_path: str | os.PathLike, results_dir: str | os.PathLike = "results") -> list[PlannedRun]:
    """The learning-rate search runs of a grid (none without `lr_search`): every (task, variant) trained
    at each candidate rate for `lr_search.steps` steps with seed `lr_search.seed`, named
    `lr-<ablation>__<task>__<variant>__lr<rate>__s<seed>`. Only validation PSNR is used to choose."""
    return _plan(grid_path, results_dir, search=True)


def _lr_search_spec(grid: Grid, path: Path) -> LrSearch | None:
    """The grid's lr_search with its defaults filled in from the base config and the seeds."""
    spec = grid.lr_search
    if spec is None:
        return None
    lrs = spec.lrs
    if not lrs or any(not lr > 0 for lr in lrs) or len(set(lrs)) != len(lrs):
        raise ConfigError(f"{path}: lr_search.lrs must be distinct positive numbers; got {lrs!r}")
    base = grid.base or {}
    steps = spec.steps if spec.steps is not None else base.get("steps", 2000)
    val_every = spec.val_every if spec.val_every is not None else base.get("val_every")
    if type(steps) is not int or steps < 1:
        raise ConfigError(f"{path}: lr_search.steps must be a positive integer and seed an integer")
    if val_every is not None and (type(val_every) is not int or val_every < 0):
        raise ConfigError(f"{path}: lr_search.val_every must be a non-negative integer; got {val_every!r}")
    return LrSearch(
        lrs=lrs, steps=steps, seed=spec.seed if spec.seed is not None else grid.seeds[0], val_every=val_every
    )


class _Job(NamedTuple):
    order: int  # the seed's position: runs go seed by seed
    name: str
    seed: int
    lr: float | None  # None: the config's rate (or the search's choice is pending)
    steps: int | None  # None: the config's steps
    variant: dict
    task: str
    strength: dict
    lr_pending: bool
    waiting: str  # why the run cannot start yet ("" when it can)


def _plan(grid_path: str | os.PathLike, results_dir: str | os.PathLike, search: bool) -> list[PlannedRun]:
    path = Path(grid_path)
    grid = read_grid(path)
    ablation, seeds, variants = grid.ablation, grid.seeds, grid.variants
    base = dict(grid.base or {})
    spec = _lr_search_spec(grid, path)
    ship_seeds = grid.ship_seeds or []
    for variant in variants:
        unknown = sorted(set(variant) - set(VARIANT_KEYS))
        if unknown:
            raise ConfigError(
                f"{path}: variant {variant['name']!r} has unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(VARIANT_KEYS)}"
            )
    searched = [v for v in variants if _lr_source(v, grid) is None]
    if search and (spec is None or not searched):
        return []
    choices_of: dict[str, dict] = {}  # lr choices per source grid, read once

    def choice_for(source: str | None, task: str, name: str) -> tuple[float | None, bool]:
        if source is None:
            if spec is None:
                return None, False
            source = str(grid_path)
        if source not in choices_of:
            choices_of[source] = lr_choices(source, results_dir)
        choice = choices_of[source].get((task, name))
        return (choice["lr"] if choice else None), choice is None

    jobs: list[_Job] = []
    for task_entry in grid.tasks:
        if isinstance(task_entry, str):
            task_entry = {"task": task_entry}
        if not isinstance(task_entry, dict) or set(task_entry) - {"task", "strength"} or "task" not in task_entry:
            raise ConfigError(f"{path}: a task must be a name or {{task, strength}}; got {task_entry!r}")
        task = task_entry["task"]
        strength = validate_strength(task, **(task_entry.get("strength") or {}))
        task_variants = list(searched if search else variants)
        waiting_of: dict[str, str] = {}
        if grid.best_other and not search:
            picked, why = _best_other(grid.best_other, path, task, results_dir)
            task_variants.append(picked)
            if why:
                waiting_of[picked["name"]] = why
        for variant in task_variants:
            if search:
                # a grid without lr_search has no search runs (returned above); _lr_search_spec fills seed in
                assert spec is not None and spec.seed is not None
                for rate in spec.lrs:
                    name = f"{LR_SEARCH_PREFIX}{ablation}__{task}__{variant['name']}__lr{rate:g}__s{spec.seed}"
                    jobs.append(_Job(0, name, spec.seed, rate, spec.steps, variant, task, strength, False, ""))
                continue
            source = _lr_source(variant, grid)
            lr, pending = choice_for(None if source is None else _beside(path, source), task, variant["name"])
            for order, seed in enumerate(seeds):
                name = f"{ablation}__{task}__{variant['name']}__s{seed}"
                waiting = waiting_of.get(variant["name"], "")
                jobs.append(_Job(order, name, seed, lr, None, variant, task, strength, pending, waiting))
    jobs.sort(key=lambda job: job.order)  # stable: seed by seed, grid order within a seed

    runs = []
    base_model = dict(base.get("model") or {})
    for _, name, seed, lr, steps, variant, task, strength, pending, waiting in jobs:
        model = {
            "variant": variant.get("variant", base_model.get("variant", "small_hin")),
            "config": {**(base_model.get("config") or {}), **(variant.get("model") or {})},
        }
        values = _merged(dict(base), variant.get("train") or {})
        values.update(
            run_name=name,
            out_dir=str(results_runs_dir(results_dir)),
            seed=seed,
            task=task,
            strength=strength,
            model=model,
        )
        if lr is not None:
            values["optimizer"] = dict(values.get("optimizer") or {}, lr=lr)
        if steps is not None:
            values["steps"] = steps
            if spec is not None and spec.val_every is not None:
                values["val_every"] = spec.val_every
        try:
            config = TrainConfig.from_dict(values)
        except ConfigError as error:
            raise ConfigError(f"{path}, run {name}: {error}") from None
        ship = not search and seed in ship_seeds and variant.get("ship", True) is not False
        runs.append(
            PlannedRun(
                name,
                ablation,
                variant["name"],
                task,
                strength,
                seed,
                config,
                grid.eval_seed,
                lr_pending=pending,
                ship=ship,
                waiting=waiting,
            )
        )
    return runs


def _lr_source(variant: dict, grid: Grid) -> str | None:
    """The grid file whose learning-rate search gives this variant its rate (None: this grid's own), as
    written: relative to the grid file's folder (`_beside`)."""
    return variant.get("lr_from", grid.lr_from)


def _beside(grid_path: Path, reference: str) -> str:
    """A grid file named inside another grid file: relative to that file's folder (or absolute)."""
    return str(Path(reference) if Path(reference).is_absolute() else Path(grid_path).parent / reference)


def _merged(base: dict, overrides: dict) -> dict:
    """`base` with `overrides` applied, nested mappings (e.g. `data`) merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _best_other(spec: dict, path: Path, task: str, results_dir: str | os.PathLike) -> tuple[dict, str]:
    """The variant entry of grid `spec["from"]` (outside `spec["exclude"]`) with the best mean *validation*
    PSNR over its seeds for `task`, with `lr_from` set to that grid; and "" or why it cannot be chosen yet
    (then the entry is a placeholder named "best-other")."""
    if not isinstance(spec, dict) or set(spec) - {"from", "exclude"} or "from" not in spec:
        raise ConfigError(f"{path}: best_other must be {{from: <grid file>, exclude: [variant names]}}; got {spec!r}")
    source = _beside(path, str(spec["from"]))
    excluded = set(spec.get("exclude") or [])
    candidates = [v for v in read_grid(source).variants if v.get("name") not in excluded]
    if not candidates:
        raise ConfigError(f"{path}: best_other excludes every variant of {source}")
    scores: dict[str, list[float | None]] = {}
    for run in plan(source, results_dir):
        if run.task != task or run.variant in excluded:
            continue
        state = read_state(run.run_dir)
        finished = state is not None and state["step"] >= run.config.steps
        scores.setdefault(run.variant, []).append(((state or {}).get("best") or {}).get("psnr") if finished else None)
    complete: dict[str, float] = {}
    for name, values in scores.items():
        known = [value for value in values if value is not None]
        if len(known) == len(values):
            complete[name] = sum(known) / len(known)
    if len(complete) < len(candidates):
        placeholder = dict(candidates[0], name="best-other", lr_from=str(spec["from"]))
        return placeholder, f"the best other variant of {source} is chosen once all its {task} runs finished"
    best = max(complete, key=lambda name: complete[name])
    return dict(next(v for v in candidates if v["name"] == best), lr_from=str(spec["from"])), ""


def lr_search_rows(grid_path: str | os.PathLike, results_dir: str | os.PathLike = "results") -> list[dict]:
    """One row per learning-rate search run (LR_SEARCH_COLUMNS), read from the run folders; `chosen` marks
    the rate with the highest best-validation PSNR of each (task, variant) once all its candidates are
    finished (a failed candidate, e.g. diverged, counts as finished and can never be chosen)."""
    rows: list[dict[str, Any]] = []  # one CSV row each (LR_SEARCH_COLUMNS)
    for run in plan_lr_search(grid_path, results_dir):
        state = read_state(run.run_dir)
        failed = (run.run_dir / FAILED_FILE).is_file()
        finished = failed or (state is not None and state["step"] >= run.config.steps)
        best = (state or {}).get("best") or {}
        rows.append(
            {
                "ablation": run.ablation,
                "task": run.task,
                "variant": run.variant,
                "lr": run.config.optimizer.lr,
                "steps": run.config.steps,
                "seed": run.seed,
                "run": run.name,
                "status": "failed" if failed else ("finished" if finished else run.status()),
                "best_val_psnr": None if failed else best.get("psnr"),
                "best_step": best.get("step"),
                "chosen": False,
            }
        )
    for key in {(r["task"], r["variant"]) for r in rows}:
        group = [r for r in rows if (r["task"], r["variant"]) == key]
        if all(r["status"] in ("finished", "failed") for r in group):
            scored = [r for r in group if r["best_val_psnr"] is not None]
            if scored:
                max(scored, key=lambda r: r["best_val_psnr"])["chosen"] = True
    return rows


def lr_choices(grid_path: str | os.PathLike, results_dir: str | os.PathLike = "results") -> dict:
    """{(task, variant): chosen search row} for every finished search (see `lr_search_rows`)."""
    return {(r["task"], r["variant"]): r for r in lr_search_rows(grid_path, results_dir) if r["chosen"]}


def write_lr_search_table(
    grid_paths: Iterable[str | os.PathLike], results_dir: str | os.PathLike = "results"
) -> Path | None:
    """`<results>/lr_search.csv` from the search runs of every grid that has one (None when none has)."""
    rows = [row for path in grid_paths for row in lr_search_rows(path, results_dir)]
    if not rows:
        return None
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LR_SEARCH_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(results_dir) / LR_SEARCH_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def _same_circumstances(source: Path, run: PlannedRun) -> bool:
    """What equal settings do not pin down: the precision this machine would train in (bf16 only where
    native) and, with `photos: optional`, whether the photos would be used now as they were then."""
    try:
        metadata = read_metadata(source / MODEL_FILE)
        precision = precision_label(use_bf16(run.config.bf16, resolve_device(run.config.device), warn=False))
        if metadata.get("precision") != precision or metadata.get("steps") != run.config.steps:
            return False
        recorded = source / DATA_FILE
        if run.config.data.photos != "none":
            validation = json.loads(recorded.read_text()).get("validation", {}) if recorded.is_file() else {}
            used_then = validation.get("source") == "photos"
            if used_then != use_photos(run.config.data.photos, warn=False):
                return False
    except (OSError, ValueError, HINetError):
        return False
    return True


def _copy_identical_run(run: PlannedRun, results_dir: str | os.PathLike, with_scores: bool = True) -> str | None:
    """Copy a finished run folder of `<results>/runs` whose training is exactly `run`'s (every setting but
    the name) into `run`'s empty folder and return its name; None when there is none. Training is
    deterministic given its settings, so the copy is what retraining would produce: a search candidate
    at the grid's own rate and seed is the grid's run, and the other way round.

    A source that was already scored under every protocol is copied with its scores (`eval.csv`, and
    `sweep.json` renamed to `run`), so it needs no weights: the same run appears in two grids (e.g. HIN in
    the norm grid and in the knob-separation grid) without being trained or scored twice (never for a
    search candidate, `with_scores=False`: it must not carry test-set scores). A source
    without scores needs its weights (to be scored), trained here in this machine's precision."""
    if run.run_dir.exists():
        return None
    wanted = run.config.to_dict()
    ignored = ("run_name", "out_dir", "checkpoint_every", "log_every", "progress")  # none changes the weights
    scored_sources, weighted_sources = [], []
    for source in run_folders(results_runs_dir(results_dir), holding=CONFIG_FILE):
        if source == run.run_dir or (source / FAILED_FILE).exists():
            continue
        try:
            saved = read_run_config(source)
            state = read_state(source)
        except (OSError, HINetError):
            continue
        if saved is None or state is None or state["step"] != run.config.steps:
            continue
        if not all(saved.get(k) == wanted.get(k) for k in set(saved) | set(wanted) if k not in ignored):
            continue
        if (
            with_scores
            and scored_protocols(source) >= set(STATS_PROTOCOLS)
            and (source / RUN_INFO_FILE).is_file()
            and json.loads((source / RUN_INFO_FILE).read_text()).get("eval_seed", 0) == run.eval_seed
        ):
            scored_sources.append(source)
        elif (source / MODEL_FILE).is_file() and _same_circumstances(source, run):
            weighted_sources.append(source)
    if scored_sources:  # preferred: nothing to train or score
        source = scored_sources[0]
        shutil.copytree(source, run.run_dir, ignore=shutil.ignore_patterns(STAGING_DIR, "*.tmp", SHIPPED_WEIGHTS_FILE))
        info = json.loads((run.run_dir / RUN_INFO_FILE).read_text())
        info.update(run=run.name, ablation=run.ablation, variant=run.variant, copied_from=source.name)
        atomic_write_bytes(run.run_dir / RUN_INFO_FILE, json.dumps(info, indent=1).encode())
        return source.name
    if weighted_sources:
        source = weighted_sources[0]
        shutil.copytree(
            source,
            run.run_dir,
            ignore=shutil.ignore_patterns(STAGING_DIR, "*.tmp", EVAL_FILE, RUN_INFO_FILE, SHIPPED_WEIGHTS_FILE),
        )
        return source.name
    return None


def ship_weights(run: PlannedRun) -> Path:
    """Write the run's final weights as fp16 safetensors (`SHIPPED_WEIGHTS_FILE`), metadata kept: the file
    the app opens on a fresh clone, where the fp32 training checkpoint (git-ignored) is absent."""
    model, metadata = load_checkpoint(run.run_dir / MODEL_FILE)
    metadata = {key: value for key, value in metadata.items() if key != "config"}  # rewritten from the model
    sources = json.loads((run.run_dir / DATA_FILE).read_text()) if (run.run_dir / DATA_FILE).is_file() else {}
    metadata = dict(
        metadata,
        data_sources=sources,  # every training image by source, area shares, the validation crops
        shipped_precision="float16 weights of the fp32 training checkpoint",
        ablation=run.ablation,
        ablation_variant=run.variant,
    )
    return save_checkpoint(run.run_dir / SHIPPED_WEIGHTS_FILE, model, metadata=metadata, dtype=torch.float16)


# ----------------------------------------------------------------------------------------------------
# Costs and evaluation of one run


# The forward every run's latency is measured on: the fast path as the ladder's first runs measured it
# (before channels_last joined FAST_PATH), so that the latency column compares like with like across runs.
LATENCY_PATH = replace(FAST_PATH, name=FAST_PATH.name.replace(" + channels_last", ""), channels_last=False)


def measure_latency_ms(model: HINet, size: int = LATENCY_SIZE, repeats: int = 3) -> float:
    """Median wall time of one forward at size x size on `LATENCY_PATH` (after one warm-up)."""
    x = torch.rand(1, model.config.in_chn, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with eval_mode(model):
        run_model(model, x, LATENCY_PATH)
        for _ in range(repeats):
            started = time.perf_counter()
            run_model(model, x, LATENCY_PATH)
            times.append(time.perf_counter() - started)
    return 1000.0 * sorted(times)[len(times) // 2]


def evaluate_run(run: PlannedRun, images: Mapping[str, np.ndarray] | None = None) -> None:
    """Test-set scores (`eval.csv`) and costs (`sweep.json`) of a trained run, both written atomically."""
    model, metadata = load_checkpoint(run.run_dir / MODEL_FILE)
    images = data.test_images() if images is None else images
    rows = evaluate_model(
        model,
        run.task,
        run.strength,
        images=images,
        seed=run.eval_seed,
        stats=STATS_PROTOCOLS,
        train_patch=run.config.data.patch,
    )
    write_csv(run.run_dir / EVAL_FILE, rows, run.task, run.strength, run.eval_seed, default_protocol(run.task))
    state = read_state(run.run_dir)
    if state is None:
        raise HINetError(f"{run.run_dir} has no {STATE_JSON_FILE}: the run must be trained before it is scored")
    config = model.config
    info = {
        "run": run.name,
        "ablation": run.ablation,
        "variant": run.variant,
        "task": run.task,
        "level": format_level(run.strength),
        "seed": run.seed,
        "norm": config.norm,
        "norm_ratio": config.ratio if config.norm != "none" else "",
        "hin_position_left": config.hin_position_left,
        "hin_position_right": config.hin_position_right,
        "norm_in_decoder": config.norm_in_decoder,
        "norm_affine": config.norm_affine,
        "wf": config.wf,
        "depth": config.depth,
        "steps": int(state["step"]),
        "lr": run.config.optimizer.lr,
        "train_patch": run.config.data.patch,
        "train_batch": run.config.data.batch,
        "train_seconds": round(float(state["train_seconds"]), 2),
        "params": count_parameters(model),
        "macs": int(count_macs(model, LATENCY_SIZE, LATENCY_SIZE)["flop_counter_macs"]),
        "latency_ms": round(measure_latency_ms(model), 2),
        "device": describe_device("cpu"),
        "train_device": metadata.get("device", ""),
        "precision": metadata.get("precision", ""),
        "eval_seed": run.eval_seed,
    }
    atomic_write_bytes(run.run_dir / RUN_INFO_FILE, json.dumps(info, indent=1).encode())


def rebuild_table(results_dir: str | os.PathLike = "results") -> Path:
    """Write `<results>/ablation.csv` from every run folder that has both `sweep.json` and `eval.csv`:
    one row per (run, stats protocol, test image), the model's rows only (no baselines, no means)."""
    results_dir = Path(results_dir)
    rows = []
    for run_dir in run_folders(results_runs_dir(results_dir), holding=RUN_INFO_FILE):
        info_path, eval_path = run_dir / RUN_INFO_FILE, run_dir / EVAL_FILE
        if not eval_path.is_file():
            continue
        info = json.loads(info_path.read_text())
        if "train_batch" not in info:  # recorded since the patch-size grid; older runs' config.yaml has it
            data = (read_run_config(run_dir) or {}).get("data") or {}
            info = {"train_patch": data.get("patch"), "train_batch": data.get("batch"), **info}
        with open(eval_path, newline="") as handle:
            for score in csv.DictReader(handle):
                if score["method"] == MODEL_METHOD and score["image"] != "mean":
                    rows.append(
                        {
                            **{k: info[k] for k in ABLATION_COLUMNS if k in info},
                            "protocol": score.get("stats") or "whole",
                            "image": score["image"],
                            "psnr": score["psnr"],
                            "ssim": score["ssim"],
                        }
                    )
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ABLATION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / ABLATION_FILE
    atomic_write_bytes(path, buffer.getvalue().encode())
    return path


def progress(grid_paths: Iterable[str | os.PathLike], results_dir: str | os.PathLike = "results") -> list[dict]:
    """One row per planned run of each grid, search runs included: grid, run, kind ("search" or "run"),
    steps, seed and status (`PlannedRun.status`); how far a ladder got, and which cells are missing."""
    rows = []
    for path in grid_paths:
        for kind, runs in (("search", plan_lr_search(path, results_dir)), ("run", plan(path, results_dir))):
            rows += [
                {
                    "grid": str(path),
                    "run": run.name,
                    "kind": kind,
                    "steps": run.config.steps,
                    "seed": run.seed,
                    "status": run.status(),
                }
                for run in runs
            ]
    return rows


# ----------------------------------------------------------------------------------------------------
# Driver


def _select(runs: list[PlannedRun], only: str | None) -> list[PlannedRun]:
    if not only:
        return runs
    return [run for run in runs if fnmatch.fnmatchcase(run.name, only) or only in run.name]


def run_sweep(
    grid_paths: Sequence[str | os.PathLike],
    results_dir: str | os.PathLike = "results",
    only: str | None = None,
    dry_run: bool = False,
    images: Mapping[str, np.ndarray] | None = None,
    echo: Callable[[str], object] = log.info,
    should_stop: Callable[[], bool] | None = None,
) -> list[dict]:
    """Grid after grid: search learning rates (grids with `lr_search`), then train, evaluate (and ship)
    every selected run; then tabulate. Returns one {run, status} per run, plus "error" for a run that
    failed (it is left out of the table; the other runs go on). `only` selects search and main runs alike
    by name. A grid's plan is made when its turn comes, so it sees the choices of the grids before it.
    When `should_stop()` turns true the training in progress saves a checkpoint, its report entry says
    STOPPED, and no further run starts (the table is still rebuilt from what is finished)."""
    names = [run.name for path in grid_paths for run in plan(path, results_dir)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"two grids define the same run(s): {', '.join(duplicates)}")
    report: list[dict] = []
    selected = 0
    for path in grid_paths:
        if len(grid_paths) > 1:
            echo(f"== {path}")
        searches = _select(plan_lr_search(path, results_dir), only)
        selected += len(searches)
        _search_learning_rates(searches, grid_paths, results_dir, dry_run, report, echo, should_stop)
        if _stopped(report):
            break
        runs = _select(plan(path, results_dir), only)
        selected += len(runs)
        _train_and_score(runs, results_dir, dry_run, images, report, echo, should_stop)
        if _stopped(report):
            break
    if only and not selected and not _stopped(report):
        raise ConfigError(f"--only {only!r} matches no run of {', '.join(map(str, grid_paths))}")
    if not dry_run:
        echo(f"wrote {rebuild_table(results_dir)}")
    failed = [r["run"] for r in report if "error" in r]
    if failed:
        echo(f"{len(failed)} run(s) failed and are not in the table: {', '.join(failed)}")
    if _stopped(report):
        echo(f"stopped on request during {report[-1]['run']}; run the sweep again to resume it")
    waiting = [r["run"] for r in report if r["status"].startswith("waiting")]
    if waiting:
        echo(f"{len(waiting)} run(s) wait for earlier runs to finish (run the sweep again)")
    return report


def _stopped(report: list[dict]) -> bool:
    return bool(report) and report[-1]["status"] == STOPPED


def _search_learning_rates(
    searches: list[PlannedRun],
    grid_paths: Sequence[str | os.PathLike],
    results_dir: str | os.PathLike,
    dry_run: bool,
    report: list[dict],
    echo: Callable[[str], object],
    should_stop: Callable[[], bool] | None = None,
) -> None:
    for index, run in enumerate(searches, 1):
        if should_stop is not None and should_stop():  # before any copy, removal or training
            report.append({"run": run.name, "status": STOPPED})
            return
        status = run.status()
        report.append({"run": run.name, "status": status})
        echo(f"[lr {index}/{len(searches)}] {run.name}: {status}")
        if dry_run or status not in ("new", "resume", RESTART):
            continue
        if status == RESTART:
            shutil.rmtree(run.run_dir)
            status = "new"
        copied = _copy_identical_run(run, results_dir, with_scores=False) if status == "new" else None
        if copied:
            echo(f"    the same training as {copied}: copied")
        else:
            try:
                result = train(run.config, should_stop=should_stop)
                if result["stopped"]:
                    report[-1]["status"] = STOPPED
                    echo(f"    stopped at step {result['step']}" + (" (checkpoint saved)" if result["step"] else ""))
                    return
                best = result["best_val_psnr"]
                echo(
                    f"    trained to step {result['step']} in {result['train_seconds']:.0f} s, best val PSNR "
                    + ("none (no validation set)" if best is None else f"{best:.2f} dB")
                )
            except TrainingDiverged as error:  # a rate that diverges is a finished, failed candidate
                run.run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(run.run_dir / FAILED_FILE, str(error) + "\n")
                echo(f"    FAILED (this rate is out of the choice): {error}")
        write_lr_search_table(grid_paths, results_dir)  # after every candidate: a stopped sweep leaves it current
    if searches and not dry_run:
        echo(f"wrote {write_lr_search_table(grid_paths, results_dir)}")


def _train_and_score(
    runs: list[PlannedRun],
    results_dir: str | os.PathLike,
    dry_run: bool,
    images: Mapping[str, np.ndarray] | None,
    report: list[dict],
    echo: Callable[[str], object],
    should_stop: Callable[[], bool] | None = None,
) -> None:
    # new cells first: a run trained again only to keep its weights waits until they are done
    runs = sorted(runs, key=lambda run: run.status() == RETRAIN_TO_SHIP)
    for index, run in enumerate(runs, 1):
        if should_stop is not None and should_stop():  # before any copy, removal, training or scoring
            report.append({"run": run.name, "status": STOPPED})
            return
        status = run.status()
        copied = _copy_identical_run(run, results_dir) if status == "new" and not dry_run else None
        if copied:
            status = run.status()
            echo(f"    {run.name}: the same training as {copied}; copied")
        report.append({"run": run.name, "status": status})
        echo(f"[{index}/{len(runs)}] {run.name}: {status}")
        if dry_run or status in ("done", "failed", WEIGHTLESS) or status.startswith("waiting"):
            continue
        try:
            if status in (RETRAIN_TO_SHIP, RESTART):  # same settings, trained again from the start
                shutil.rmtree(run.run_dir)
                status = "new"
            if status in ("new", "resume"):
                result = train(run.config, should_stop=should_stop)
                if result["stopped"]:  # not finished: scored when a later sweep finishes it
                    report[-1]["status"] = STOPPED
                    echo(f"    stopped at step {result['step']}" + (" (checkpoint saved)" if result["step"] else ""))
                    return
                val = "none" if result["val_psnr"] is None else f"{result['val_psnr']:.2f} dB"
                echo(f"    trained to step {result['step']} in {result['train_seconds']:.0f} s, val PSNR {val}")
            if status != "ship":
                evaluate_run(run, images=images)
                echo(f"    evaluated -> {run.run_dir / EVAL_FILE}")
            if run.ship:
                echo(f"    shipped -> {ship_weights(run)}")
        except HINetError as error:  # e.g. a diverged variant: record it and go on with the others
            report[-1]["error"] = str(error)
            echo(f"    FAILED: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("grids", nargs="*", help="grid files, e.g. configs/ablation_norm.yaml")
    parser.add_argument(
        "--ladder",
        action="store_true",
        help=f"the budget ladder's grids, in order, after any given ({', '.join(LADDER_GRIDS)})",
    )
    parser.add_argument("--only", help="run only runs whose name matches this glob or contains this text")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; train nothing")
    parser.add_argument("--results", default="results", help="results folder (default: results)")
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="only rebuild RESULTS/ablation.csv from the runs evaluated so far; train nothing",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    if args.ladder:  # the ladder's grids are the project's, wherever the command runs
        ladder = [g if Path(g).is_file() else str(PROJECT_ROOT / g) for g in LADDER_GRIDS]
        args.grids = [*args.grids, *[g for g in ladder if g not in args.grids]]
    if not args.grids and not args.table_only:
        parser.error("give grid files or --ladder")
    if args.table_only:
        print(f"wrote {rebuild_table(args.results)}")
        return 0
    try:
        stop_requested = stop_on_signals()
        report = run_sweep(
            args.grids,
            args.results,
            only=args.only,
            dry_run=args.dry_run,
            echo=print,
            should_stop=stop_requested,
        )
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C / SIGTERM: the run resumes from its last periodic checkpoint
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return STOPPED_EXIT
    if _stopped(report) or stop_requested():
        return STOPPED_EXIT
    return 1 if any("error" in r for r in report) else 0


if __name__ == "__main__":
    sys.exit(main())
