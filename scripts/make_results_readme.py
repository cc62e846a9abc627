"""Write the generated sections of results/README.md: the shipped default models and the ablations.

    python scripts/make_results_readme.py [--results results]

The default-models section comes from `results/eval/<task>.csv` (written by `python -m hinet.evaluate ...
--baselines --out-csv`) and the metadata of `results/models/<task>.safetensors`; it sits between
`<!-- models:start -->` and `<!-- models:end -->`.

Every number in the ablation section is computed here by `hinet.results_table` (the same code as the app's
ablation explorer); nothing is typed in. Per task and level it gives, for each ablation, one table per
test-time protocol (how normalization statistics were computed at test time: whole, tiled, local), with mean
± std over seeds, the paired Δ to the baseline with its hierarchical bootstrap interval and each seed's Δ; a
generated paragraph on how much each variant's score moves between protocols; and the paper's claims checked
per protocol. The section sits between `<!-- ablation:start -->` and
`<!-- ablation:end -->`; text outside the markers is kept, and a README without markers gets the section
appended. PSNR-vs-step plots go to results/plots/.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from hinet import data, results_table as rt
from hinet.errors import HINetError
from hinet.inference import training_patch
from hinet.runs import (
    ABLATION_FILE,
    CONFIG_FILE,
    CONFIGS_DIR,
    DATA_FILE,
    DEFAULTS_DIR,
    LOG_FILE,
    STATE_JSON_FILE,
    planned_steps,
    read_run_config,
    results_runs_dir,
    shipped_models_dir,
    shipped_source_runs,
    validation_baselines_csv,
)
from hinet.sweep import LADDER_GRIDS, LR_SEARCH_FILE, RETRAIN_TO_SHIP, progress
from hinet.tasks import TASKS
from hinet.training_data import validation_id

START, END = "<!-- ablation:start -->", "<!-- ablation:end -->"
MODELS_START, MODELS_END = "<!-- models:start -->", "<!-- models:end -->"
RERUN_START, RERUN_END = "<!-- rerun:start -->", "<!-- rerun:end -->"
# The norm ablation as it was published before test-time protocols, photo validation, warm-up and
# area-proportional sampling (commit f1a28fb): the "before" of the rerun comparison.
BEFORE_CSV = "archive/ablation_before_protocols.csv"
STATS_START, STATS_END = "<!-- stats:start -->", "<!-- stats:end -->"
LADDER_START, LADDER_END = "<!-- ladder:start -->", "<!-- ladder:end -->"
PILOT_FILES = (CONFIGS_DIR / "default_pilot.yaml", CONFIGS_DIR / "default_lr_pilot.yaml")  # run in this order
FINISHED = ("done", "ship", RETRAIN_TO_SHIP)  # run statuses whose scores are in the table
STATS_CSV = "stats_protocols.csv"  # written by scripts/stats_protocols.py


# The bars a task's default must clear (issue "Default models that beat the classical methods"), judged
# per evaluation level from results/eval/<name>.csv; every shipped file is judged against its task's bars.
@dataclass(frozen=True)
class Bar:
    level: Mapping[str, float]  # the strengths it is judged at (the others at the task's defaults)
    reference: str  # "input" or one of the task's baselines
    margin_db: float = 0.0  # ours >= reference + margin
    speedup: float | None = None  # and at least this many times faster than the reference
    every_image: bool = False  # on every test image, not only on the mean

    def describe(self, task: str) -> str:
        what = f"PSNR >= {self.reference}{f' + {self.margin_db:g} dB' if self.margin_db else ''}"
        if self.every_image:
            what += " on every test image"
        if self.speedup is not None:
            what += f" at >= {self.speedup:g}x its speed"
        return f"{what} at {level_key(task, self.level)}"


MODEL_BARS: dict[str, tuple[Bar, ...]] = {
    "denoise": tuple(Bar({"sigma": sigma}, "bm3d", 0.0, speedup=10.0) for sigma in (15, 25, 50)),
    "jpeg": (
        Bar({"quality": 10}, "input", 1.0),
        Bar({"quality": 30}, "input", 0.5),
        Bar({"quality": 10}, "input", every_image=True),
        Bar({"quality": 30}, "input", every_image=True),
    ),
    "deblur": (Bar({"length": 15, "angle": 30}, "input", 2.0),),
    "derain": (Bar({"density": 0.3}, "median5", 3.0), Bar({"density": 0.7}, "median5", 3.0)),
}
GAP_REFERENCES = {"deblur": "richardson_lucy"}  # reported beside the bars: given the true kernel
FLAT_TOLERANCE_DB = 0.02  # a last-20% gain up to this counts as flat (validation noise on 10 crops)


def level_key(task: str, level: Mapping[str, float]) -> str:
    """A level as the evaluation CSVs write it (`strength` column), defaults filled in."""
    return data.format_level(data.validate_strength(task, **level))


def judge_bar(bar: Bar, task: str, rows) -> str:
    """`reached`, `not reached: X dB short`, or why it cannot be judged, from an eval CSV's rows."""
    from hinet.evaluate import MODEL_METHOD

    key = level_key(task, bar.level)
    at = rows[rows["strength"] == key]
    means = at[at["image"] == "mean"].set_index("method")
    if MODEL_METHOD not in means.index or bar.reference not in means.index:
        return f"not evaluated at {key} (with {bar.reference})"
    ours, ref = means.loc[MODEL_METHOD], means.loc[bar.reference]
    images = at[at["image"] != "mean"].pivot_table(index="image", columns="method", values="psnr")
    per_image = {MODEL_METHOD, bar.reference} <= set(images.columns)
    gaps = images[MODEL_METHOD] - images[bar.reference] - bar.margin_db if per_image else None
    if bar.every_image:
        if gaps is None:
            return f"not evaluated per image at {key}"
        worst = gaps.idxmin()
        verdict = (
            "reached"
            if gaps.min() >= 0
            else f"**not reached: {(gaps < 0).sum()} of {len(gaps)} images below it (worst {worst}, {gaps.min():+.2f} dB)**"
        )
        return f"{verdict} (lowest margin {gaps.min():+.2f} dB on {worst})"
    gap = ours["psnr"] - (ref["psnr"] + bar.margin_db)
    verdict = "reached" if gap >= 0 else f"**not reached: {-gap:.2f} dB short**"
    detail = f"ours {ours['psnr']:.2f} dB vs {ref['psnr']:.2f} dB"
    if gaps is not None and len(gaps):  # a mean can hide one image that decides it, or one that sinks it
        worst = gaps.idxmin()
        detail += (
            f"; reached on {(gaps >= 0).sum()} of {len(gaps)} images, worst {worst} {gaps.min():+.2f} dB from the bar"
        )
    if bar.speedup is not None:
        measured = ref["seconds"] / max(ours["seconds"], 1e-9)
        detail += f"; {measured:.1f}x faster"
        if measured < bar.speedup:
            verdict += "; **speed bar not reached**"
    return f"{verdict} ({detail})"


def curve_verdict(log_path: Path) -> dict | None:
    """From a run's log.jsonl: validation points, steps, wall time, and whether the curve has flattened
    (the best validation PSNR of the last 20% of steps is at most FLAT_TOLERANCE_DB above the best before);
    None without a log."""

    if not log_path.is_file():
        return None
    points = []
    for line in log_path.read_text().splitlines():
        record = json.loads(line)
        if record.get("val_psnr") is not None:
            points.append((int(record["step"]), float(record["wall"]), float(record["val_psnr"])))
    if not points:
        return {"points": [], "verdict": "no validation points in its log"}
    last_step = points[-1][0]
    before = [p for p in points if p[0] <= 0.8 * last_step]
    after = [p for p in points if p[0] > 0.8 * last_step]
    result = {"points": points, "steps": last_step, "wall": points[-1][1], "best": max(p[2] for p in points)}
    if len(before) < 2 or not after:
        result["verdict"] = "too few validation points to tell whether it has flattened"
        return result
    gain = max(p[2] for p in after) - max(p[2] for p in before)
    result["gain"] = gain
    result["flattened"] = gain <= FLAT_TOLERANCE_DB
    result["verdict"] = (
        f"flattened: {gain:+.3f} dB over the last 20% of steps (tolerance {FLAT_TOLERANCE_DB} dB)"
        if result["flattened"]
        else f"still climbing: {gain:+.3f} dB over the last 20% of steps"
    )
    return result


def validation_references(results: Path, task: str, level: str, run_dir: Path) -> dict[str, float]:
    """Validation PSNR of the input and the classical baselines on the very pairs a run of `task` validates
    on (`scripts/validation_baselines.py`), by method; {} when they were not measured."""
    path, sources = validation_baselines_csv(results), run_dir / DATA_FILE
    if not path.is_file() or not sources.is_file():
        return {}
    pairs = validation_id(json.loads(sources.read_text())["validation"])
    with open(path, newline="") as handle:
        return {
            row["method"]: float(row["val_psnr"])
            for row in csv.DictReader(handle)
            if (row["task"], row["level"], row["validation"]) == (task, level, pairs)
        }


INPUT_LINE_MARGIN_DB = 3.0  # the degraded input is drawn only this close to the curve's lowest point


def _drawn_references(references: Mapping[str, float], lowest: float | None = None) -> dict[str, float]:
    """The reference lines a validation plot draws: every classical method, and the input only within
    INPUT_LINE_MARGIN_DB of the curve (mostly it is far below and would squash the curves; for deblurring
    it sits just under them, above a Richardson-Lucy that the small crops defeat)."""
    return {
        method: value
        for method, value in references.items()
        if method != "input" or (lowest is not None and value >= lowest - INPUT_LINE_MARGIN_DB)
    }


def _draw_references(axes, references: Mapping[str, float], lowest: float | None = None) -> None:
    drawn = _drawn_references(references, lowest)
    for index, (method, value) in enumerate(sorted(drawn.items(), key=lambda item: -item[1])):
        axes.axhline(value, linestyle="--", linewidth=1, color=f"C{(index + 5) % 10}", label=f"{method} (same pairs)")


def plot_learning_curve(points, title: str, path: Path, references: Mapping[str, float] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_step, by_wall) = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    steps, walls, psnrs = zip(*points)
    by_step.plot(steps, psnrs, marker=".")
    by_step.set_xlabel("training step")
    by_step.set_ylabel("validation PSNR (dB)")
    by_wall.plot([w / 3600 for w in walls], psnrs, marker=".", color="tab:orange")
    by_wall.set_xlabel("training time (hours)")
    for axis in (by_step, by_wall):
        axis.grid(alpha=0.3)
        _draw_references(axis, references or {}, min(psnrs))
    if _drawn_references(references or {}, min(psnrs)):
        by_step.legend(fontsize=7)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_validation_curves(curves, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    for variant, points in curves.groupby("variant", sort=False):
        (line,) = axes.plot(points["step"], points["mean"], marker="o", markersize=3, label=variant)
        if (points["n"] > 1).any():
            axes.fill_between(points["step"], points["min"], points["max"], color=line.get_color(), alpha=0.15)
    _finish_validation_plot(figure, axes, "training step", title, path)


def _finish_validation_plot(figure, axes, xlabel: str, title: str, path: Path) -> None:
    """Labels, grid and legend of a validation-PSNR figure, saved to `path` and closed."""
    import matplotlib.pyplot as plt

    axes.set_xlabel(xlabel)
    axes.set_ylabel("validation PSNR (dB)")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(text)).strip("-")


def ablation_section(table, runs_dir: Path, plots_dir: Path, readme_dir: Path) -> str:
    lines = [
        START,
        "## Ablations",
        "",
        "Generated by `python scripts/make_results_readme.py` from `results/ablation.csv` and "
        "`results/runs/*/log.jsonl` (the sweep: `python -m hinet.sweep configs/ablation_*.yaml`). "
        "Do not edit between the markers: rerun the script.",
        "",
        f"Each trained run is tested under every test-time protocol ({rt.PROTOCOL_MEANING}: "
        f"{', '.join(f'`{p}`' for p in rt.STATS_PROTOCOLS)}). A table holds one protocol: scores under "
        "different statistics are never averaged or paired together, except where a table says it pairs "
        "one run's scores of the same image under two protocols (the protocol's gain: same weights).",
        "",
    ]
    for (task, level), group in table.groupby(["task", "level"], sort=False):
        lines += [f"### {task}, level {level}", ""]
        for ablation, rows in group.groupby("ablation", sort=False):
            baseline = rt.default_baseline(rows)
            budgets = " / ".join(rt.format_steps(steps) for steps in sorted({int(s) for s in rows["steps"].dropna()}))
            lines += [
                f"#### Ablation: {ablation}, {budgets} steps (baseline {baseline})",
                "",
                "How these numbers were measured:",
                "",
                rt.protocol_text(rows),
                *[f"- **Mixed setups:** {note}" for note in rt.mixed_setup_notes(rows)],
                "",
                "How much the scores move between protocols: " + protocol_shift_paragraph(rows),
                "",
                *rt.patch_markdown(rows),
            ]
            for protocol in rt.protocols(rows):
                lines += [
                    f"##### Protocol `{protocol}`",
                    "",
                    protocol_table(rt.select(rows, protocol=protocol), baseline),
                    "",
                ]
            lines += rt.knob_markdown(rows)
            diff = rt.config_differences(rows, baseline)
            lines += ["Knobs that differ from the baseline:", "", rt.frame_to_markdown(diff), ""]
            run_variants = dict(zip(rows["run"], rows["variant"]))
            curves = rt.validation_curves(rt.read_run_logs(runs_dir, run_variants), run_variants)
            if not curves.empty:
                plot = plots_dir / f"{_slug(task)}_{_slug(level)}_{_slug(ablation)}_val_psnr.png"
                plot_validation_curves(curves, f"{task} {level}: {ablation} (mean over seeds, min-max shaded)", plot)
                lines += [f"![validation PSNR vs step, {ablation}]({_relative(plot, readme_dir)})", ""]
        lines += [
            "#### Do the paper's claims reproduce here?",
            "",
            "Each verdict is computed, per protocol, from the paired differences above (95% hierarchical "
            'bootstrap intervals); "reproduces" needs every comparison to be significant in the paper\'s '
            "direction, and a comparison with a single training seed is never significant.",
            "",
        ]
        # Per ablation: two grids may reuse variant names for different runs (e.g. norm at 300 and 3k steps).
        checks = [
            (position, ablation, check)
            for ablation, rows in group.groupby("ablation", sort=False)
            for per_protocol in rt.claims_by_protocol(rows).values()
            for position, check in enumerate(per_protocol)
        ]
        checks.sort(key=lambda item: item[0])  # stable: each claim's ablations and protocols side by side
        lines += [
            rt.to_markdown(
                ["paper's claim", "ablation", "protocol", "here", "evidence (PSNR)"],
                [[c.claim, a, c.protocol, f"**{c.verdict}**", c.evidence] for _, a, c in checks],
            ),
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def plot_ladder(ladder, title: str, path: Path) -> None:
    """Δ PSNR vs HIN against the budget (log axis), one line per variant, a panel per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [p for p in rt.STATS_PROTOCOLS if p in set(ladder["protocol"])]
    figure, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.8), dpi=100, sharey=True, squeeze=False)
    for axis, protocol in zip(axes[0], present):
        rows = ladder[ladder["protocol"] == protocol]
        for variant, points in rows.groupby("variant", sort=False):
            points = points.sort_values("steps")
            errors = [(points["delta"] - points["low"]).fillna(0), (points["high"] - points["delta"]).fillna(0)]
            axis.errorbar(
                points["steps"], points["delta"], yerr=errors, marker="o", markersize=4, capsize=3, label=variant
            )
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_xscale("log")
        axis.set_xlabel("training steps (log)")
        axis.set_title(f"protocol {protocol}")
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("Δ PSNR vs HIN (dB), 95% interval")
    axes[0][-1].legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def lr_choice_lines(results: Path) -> list[str]:
    """The learning rate each search chose, per grid and task, marking a choice at the edge of the searched
    range (the best rate may then lie outside it), from `results/lr_search.csv`."""
    import pandas as pd

    path = results / LR_SEARCH_FILE
    if not path.is_file():
        return []
    search = pd.read_csv(path)
    lines = []
    for (ablation, task), group in search.groupby(["ablation", "task"], sort=False):
        rates = sorted(set(group["lr"]))
        steps = ", ".join(str(s) for s in sorted(set(group["steps"])))
        chosen = group[group["chosen"].astype(str) == "True"]
        cells = []
        for row in chosen.itertuples():
            edge = (
                " (top of the range)" if row.lr == rates[-1] else " (bottom of the range)" if row.lr == rates[0] else ""
            )
            cells.append(f"{row.variant} {row.lr:g}{edge}")
        if cells:
            lines.append(
                f"- Learning rates of `{ablation}`, {task} (searched {', '.join(f'{r:g}' for r in rates)} for "
                f"{steps} steps, best validation PSNR): {'; '.join(cells)}."
            )
    if any("of the range" in line for line in lines):
        lines.append(
            "- A rate at the edge of its range may not be the best one: the search did not try beyond it. "
            "A search of a few hundred steps also favours rates that learn fast early."
        )
    return [*lines, ""] if lines else []


def _missing_cells(runs: list[str]) -> str:
    """ "denoise hin s0 s1; deblur none s2" from run names `<ablation>__<task>__<variant>__s<seed>`."""
    if not runs:
        return "none"
    cells: dict[str, list[str]] = {}
    for name in runs:
        _, task, variant, seed = name.split("__")
        cells.setdefault(f"{task} {variant}", []).append(seed)
    return "; ".join(f"{cell} {' '.join(seeds)}" for cell, seeds in cells.items())


def ladder_section(table, results: Path, plots_dir: Path, readme_dir: Path) -> str:
    """The budget ladder: how far the runs got, plain words, the verdicts per budget and protocol, the
    ranking-vs-budget figure and the table behind it, per task; all computed from the data."""

    lines = [
        LADDER_START,
        "## The normalization budget ladder",
        "",
        "The norm axis (none, batch, layer, instance, HIN) trained at several step budgets, each norm at the "
        "learning rate its own 300-step search chose on validation PSNR (`results/lr_search.csv`), scored on "
        "the test set under the three protocols. Generated by `python scripts/make_results_readme.py`; the "
        "runs come from `scripts/run_ladder.sh` (`python -m hinet.sweep --ladder`).",
        "",
        *lr_choice_lines(results),
    ]
    rows = progress([g for g in LADDER_GRIDS if (results.parent / g).is_file() or Path(g).is_file()], results)
    if rows:
        lines += ["How far the ladder got (runs with scores / planned; search runs are validation-only):", ""]
        summary = []
        for grid in dict.fromkeys(r["grid"] for r in rows):
            mine = [r for r in rows if r["grid"] == grid]
            search = [r for r in mine if r["kind"] == "search"]
            main = [r for r in mine if r["kind"] == "run"]
            searched = sum(r["status"] not in ("new", "resume") for r in search)
            summary.append(
                [
                    f"`{grid}`",
                    f"{searched}/{len(search)}" if search else "-",
                    f"{sum(r['status'] in FINISHED for r in main)}/{len(main)}",
                    _missing_cells([r["run"] for r in main if r["status"] not in FINISHED]),
                    _missing_cells([r["run"] for r in main if r["status"] == RETRAIN_TO_SHIP]),
                ]
            )
        lines += [
            rt.to_markdown(
                ["grid", "lr search", "runs scored", "missing cells", "scored, weights to ship not kept"], summary
            ),
            "",
            "A run in the last column was scored (its rows are in the tables) but its fp16 weights were not kept, "
            "so the app cannot open it; the ladder trains it again last, and its new scores then replace these.",
            "",
        ]
    ladder_rows = table[table["ablation"].isin(rt.ladder_ablations(table))]
    for (task, level), group in ladder_rows.groupby(["task", "level"], sort=False):
        ladder = rt.budget_ladder(group)
        if ladder.empty:
            continue
        lines += [f"### {task}, level {level}", ""]
        lines += rt.setup_lines(group) + [f"- {sentence}" for sentence in rt.ladder_sentences(ladder)] + [""]
        grid = rt.verdict_grid(rt.ladder_claims(group))
        if not grid.empty:
            lines += [
                "The paper's claims per budget (columns) and protocol (computed: a claim reproduces when "
                "every comparison it needs is significant in the paper's direction):",
                "",
                rt.frame_to_markdown(grid),
                "",
            ]
        plot = plots_dir / f"{_slug(task)}_{_slug(level)}_ladder.png"
        plot_ladder(ladder, f"{task} {level}: Δ vs HIN by budget", plot)
        lines += [f"![ranking vs budget, {task}]({_relative(plot, readme_dir)})", ""]
        cells = [
            [
                f"`{row.protocol}`",
                rt.format_steps(row.steps),
                row.variant,
                str(row.n_seeds),
                rt._mean_std(row.psnr_mean, row.psnr_std, rt.PSNR_DIGITS),
                "0 (reference)"
                if row.variant == "hin"
                else f"{rt._signed(row.delta, rt.PSNR_DIGITS)} "
                f"{rt._interval(row.low, row.high, rt.PSNR_DIGITS, len(row.per_seed))}",
                rt.format_seed_deltas(row.per_seed) if row.variant != "hin" else "",
            ]
            for row in ladder.itertuples()
        ]
        lines += [
            rt.to_markdown(
                ["protocol", "steps", "variant", "seeds", "PSNR mean ± std", "Δ vs HIN [95%]", "per-seed Δ"], cells
            ),
            "",
            "Δ pairs only the seeds both the variant and HIN have (listed under per-seed Δ), image by image; "
            "where their seed counts differ it is not the difference of the two means.",
            "",
        ]
    lines.append(LADDER_END)
    return "\n".join(lines)


def _delta_cell(summary, variant: str, baseline: str) -> str:
    row = summary[summary["variant"] == variant]
    if row.empty:
        return "n/a"
    row = row.iloc[0]
    if variant == baseline:
        return f"{row['psnr_mean']:.{rt.PSNR_DIGITS}f} (reference)"
    interval = rt._interval(row["delta_psnr_low"], row["delta_psnr_high"], rt.PSNR_DIGITS, row["n_paired_seeds"])
    return f"{row['psnr_mean']:.{rt.PSNR_DIGITS}f} ({row['delta_psnr']:+.{rt.PSNR_DIGITS}f} {interval})"


def rerun_section(before, after, ablation: str = "norm") -> str:
    """The norm ablation before and after the measuring instruments changed, side by side: mean test PSNR
    and paired Δ vs the baseline [95% hierarchical interval] of each variant, before (one protocol) and
    now under each protocol. Every cell is computed from the two tables."""
    lines = [
        RERUN_START,
        "## The 300-step norm ablation, before and after the protocol change",
        "",
        "Generated from `results/archive/ablation_before_protocols.csv` (the table published before; "
        "`whole` scoring only, lr 1e-3 without warm-up, validation on 3 texture crops, images drawn "
        "uniformly, no photos) and `results/ablation.csv` (the rerun: same 300-step budget and lr, 15-step "
        "warm-up, Debian photos in training, images drawn in proportion to area, validation on 10 "
        "held-out photo crops, every run scored under the three protocols). Cells: mean test PSNR (dB) "
        "over seeds, then Δ vs the baseline with its 95% hierarchical bootstrap interval.",
        "",
    ]
    before = before[before["ablation"] == ablation]
    after = after[after["ablation"] == ablation]
    if before.empty or after.empty:
        return "\n".join(lines + ["No rows of this ablation in one of the tables yet.", "", RERUN_END])
    for (task, level), old in before.groupby(["task", "level"], sort=False):
        new = after[(after["task"] == task) & (after["level"] == level)]
        baseline = rt.default_baseline(old)
        old_summary = rt.summarize(rt.select(old, protocol=rt.preferred_protocol(old)), baseline)
        protocols = rt.protocols(new) if not new.empty else []
        new_summaries = {
            p: rt.summarize(rt.select(new, protocol=p), baseline)
            for p in protocols
            if baseline in set(rt.select(new, protocol=p)["variant"])
        }
        header = ["variant", "before (`whole`)"] + [f"now `{p}`" for p in new_summaries]
        rows = [
            [variant, _delta_cell(old_summary, variant, baseline)]
            + [_delta_cell(summary, variant, baseline) for summary in new_summaries.values()]
            for variant in rt.variant_order(old)
        ]
        seeds_now = sorted(set(new["seed"])) if not new.empty else []
        lines += [
            f"### {task}, level {level} (baseline {baseline}; seeds now: "
            f"{', '.join(map(str, seeds_now)) or 'none yet'})",
            "",
            rt.to_markdown(header, rows),
            "",
        ]
    lines.append(RERUN_END)
    return "\n".join(lines)


def stats_section(scores, ablation) -> str:
    """Every model of `scripts/stats_protocols.py` under every rule (mean test PSNR and the change from
    `whole`), and the protocol bars checked on the data: tiled beats whole by >= 2 dB on the 300-step HIN
    deblur runs (seed mean) and by >= 0.3 dB on the shipped denoise_hin; batch-norm models agree within
    0.1 dB across the three protocols."""
    import pandas as pd

    lines = [
        STATS_START,
        "## Statistics at test time: every model, every protocol",
        "",
        "Generated from `results/stats_protocols.csv` (`python scripts/stats_protocols.py --runs "
        '"norm__*__hin__s*"`) and `results/ablation.csv`. Test set: the 5 sporco images, degradation seed '
        "0; shipped models at the task's default level. Rules: `whole` (one pass), `tiled` (tiles of the "
        "training patch, overlap a quarter, blended), `local` (TLC: window 1.5x the training map, scaled "
        "to each level, replicate edges) and three variants of the local rule: window 1x and 3x, and "
        "windows clipped at the border (`shrink`). Cells: mean PSNR in dB (change from `whole`). Shipped "
        "models are scored afresh by every run of the script; a run whose weights are no longer on disk keeps "
        "the rows of the last run that had them.",
        "",
    ]
    rules = list(dict.fromkeys(scores["rule"]))
    means = scores.groupby(["model", "rule"], sort=False)["psnr"].mean().unstack("rule")[rules]
    norms = scores.drop_duplicates("model").set_index("model")[["norm", "train_patch", "patch_assumed"]]
    rows = []
    for model, row in means.iterrows():
        patch = f"{norms.loc[model, 'train_patch']}" + (
            " (assumed)" if str(norms.loc[model, "patch_assumed"]) == "True" else ""
        )
        rows.append(
            [model, norms.loc[model, "norm"], patch, f"{row['whole']:.2f}"]
            + [f"{row[r]:.2f} ({row[r] - row['whole']:+.2f})" for r in rules if r != "whole"]
        )
    lines += [rt.to_markdown(["model", "norm", "train patch", "whole"] + [r for r in rules if r != "whole"], rows), ""]

    bars = []
    hin_deblur = ablation[
        (ablation["ablation"] == "norm") & (ablation["variant"] == "hin") & (ablation["task"] == "deblur")
    ]
    if set(rt.STATS_PROTOCOLS) <= set(hin_deblur["protocol"]):
        per_seed = hin_deblur.groupby(["protocol", "seed"])["psnr"].mean().unstack("protocol")
        per_seed = per_seed[["whole", "tiled"]].dropna()  # only seeds scored both ways
        gain = float((per_seed["tiled"] - per_seed["whole"]).mean())
        bars.append(
            [
                "300-step HIN deblur runs: tiled - whole >= 2 dB (seed mean)",
                f"{gain:+.2f} dB over {len(per_seed)} seed(s)",
                "met" if gain >= 2 else "**not met**",
            ]
        )
    if "models/denoise_hin" in means.index:
        gain = float(means.loc["models/denoise_hin", "tiled"] - means.loc["models/denoise_hin", "whole"])
        bars.append(
            ["shipped denoise_hin: tiled - whole >= 0.3 dB", f"{gain:+.2f} dB", "met" if gain >= 0.3 else "**not met**"]
        )
    batch = ablation[ablation["norm"] == "batch"]
    if set(rt.STATS_PROTOCOLS) <= set(batch["protocol"]):
        per_run = (
            batch.groupby(["run", "protocol"])["psnr"].mean().unstack("protocol")[list(rt.STATS_PROTOCOLS)].dropna()
        )
        spread = float((per_run.max(axis=1) - per_run.min(axis=1)).max())
        bars.append(
            [
                "batch-norm runs: the three protocols agree within 0.1 dB",
                f"largest spread {spread:.3f} dB over {len(per_run)} run(s)",
                "met" if spread <= 0.1 else "**not met**",
            ]
        )
    batch_models = [m for m in means.index if norms.loc[m, "norm"] == "batch"]
    if batch_models:
        spread = float(
            pd.Series(
                {
                    m: means.loc[m, ["whole", "tiled", "local"]].max() - means.loc[m, ["whole", "tiled", "local"]].min()
                    for m in batch_models
                }
            ).max()
        )
        bars.append(
            [
                "shipped batch-norm models: the three protocols agree within 0.1 dB",
                f"largest spread {spread:.3f} dB",
                "met" if spread <= 0.1 else "**not met**",
            ]
        )
    if bars:
        lines += [
            "Bars of the protocol work, checked on these numbers:",
            "",
            rt.to_markdown(["bar", "measured", "verdict"], bars),
            "",
        ]
    lines.append(STATS_END)
    return "\n".join(lines)


def protocol_table(rows, baseline: str) -> str:
    """The summary table of one protocol's rows, or why there is none (its baseline was not tested in it)."""
    if baseline not in set(rows["variant"]):
        return f"No run of the baseline {baseline} was tested under this protocol, so no Δ can be paired."
    return rt.markdown_summary(rt.summarize(rows, baseline), baseline)


def protocol_shift_paragraph(group) -> str:
    """How much each variant's mean PSNR moves between protocols, and whether the ranking survives, stated
    from `rt.means_by_protocol` (each protocol's numbers computed on its own rows)."""
    means = rt.means_by_protocol(group)
    present = list(means.columns)
    if len(present) < 2:
        return (
            f"Every row here uses the `{present[0]}` protocol ({rt.PROTOCOL_MEANING}); there is no other "
            "protocol to compare with."
        )
    first = present[0]

    def score(value: float, sign: str = "") -> str:
        return "n/a" if math.isnan(value) else f"{value:{sign}.{rt.PSNR_DIGITS}f}"

    listing = []
    for variant, row in means.iterrows():
        cells = [f"{first} {score(row[first])}"]
        cells += [f"{p} {score(row[p])} ({score(row[p] - row[first], '+')})" for p in present[1:]]
        listing.append(f"{variant}: {', '.join(cells)}")
    spread = (means.max(axis=1) - means.min(axis=1)).dropna()
    rankings = {p: tuple(means[p].dropna().sort_values(ascending=False).index) for p in present}
    best = "; ".join(f"under `{p}` {ranking[0]}" for p, ranking in rankings.items() if ranking)
    sentences = [
        f"Mean test PSNR in dB (mean over seeds of the image average) of each variant under each protocol, "
        f"with the change from `{first}` in parentheses: {'; '.join(listing)}."
    ]
    if not spread.empty:
        sentences.append(
            f"The largest move is {spread.idxmax()}'s ({spread.max():.{rt.PSNR_DIGITS}f} dB between "
            f"its lowest and highest protocol), the smallest {spread.idxmin()}'s "
            f"({spread.min():.{rt.PSNR_DIGITS}f} dB)."
        )
    same_order = len(set(rankings.values())) == 1
    same_best = len({ranking[0] for ranking in rankings.values() if ranking}) == 1
    if same_order:
        order = "the variants rank the same under every protocol."
    elif same_best:
        order = "the same variant has the best mean under every protocol, but the order of the others changes."
    else:
        order = "the variant with the best mean changes with the protocol."
    sentences.append(f"Best mean: {best}; {order}")
    seeds = group.drop_duplicates("run").groupby("variant")["seed"].nunique()
    if seeds.nunique() > 1:
        counts = ", ".join(f"{variant} {n}" for variant, n in seeds.items())
        sentences.append(
            f"These means are over unequal seed counts ({counts}), so they rank unlike runs; the paired Δ of "
            "the table above (same seeds and images) is the comparison to read."
        )
    return " ".join(sentences)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def default_stats_line(meta: dict) -> str:
    """The model's default test-time statistics (what the app and `hinet.restore` run) and their
    validation scores, from its metadata (`python -m hinet.stats_choice FILE --write`)."""
    from hinet.stats_choice import METADATA_KEY, SCORES_KEY, recorded_stats

    chosen, why = recorded_stats(meta)
    if METADATA_KEY not in meta:
        return f"Default test-time statistics: {chosen} ({why})."
    scores = meta.get(SCORES_KEY) or {}
    measured = ", ".join(f"{k} {v['psnr']:.2f} dB in {v['seconds']:.1f} s" for k, v in scores.items())
    why = why.removeprefix("this model's default, ")
    return (
        f"Default test-time statistics (app and CLI): **{chosen}**, {why}"
        + (f"; validation: {measured}" if measured else "")
        + " (`python -m hinet.stats_choice FILE --write`)."
    )


def rows_under_default_stats(rows, meta: dict):
    """A shipped model's evaluation rows as the models section shows them: the model (`MODEL_METHOD`) under
    its default test-time statistics, which is what a user of the app or CLI gets and what the bars are
    judged on; its scores under other protocols renamed `hinet (<protocol>)`; the baselines as they are.
    Returns (rows, a sentence saying which protocol the figures are)."""
    from hinet.evaluate import MODEL_METHOD
    from hinet.stats_choice import recorded_stats

    chosen, _ = recorded_stats(meta)
    rows = rows.copy()
    stats = rows["stats"].fillna("") if "stats" in rows.columns else rows["method"].map(lambda _: "")
    model = rows["method"] == MODEL_METHOD
    stats = stats.where(~model | (stats != ""), "whole")  # files written before protocols: one whole pass
    available = set(stats[model])
    shown = chosen if chosen in available else "whole"
    rows.loc[model & (stats != shown), "method"] = MODEL_METHOD + " (" + stats[model & (stats != shown)] + ")"
    if shown == chosen:
        sentence = f"The `{MODEL_METHOD}` figures and the bars below are under its default, `{shown}`."
    else:
        sentence = (
            f"The `{MODEL_METHOD}` figures and the bars below are `{shown}` scores: this evaluation has none "
            f"under its default `{chosen}` (`python -m hinet.evaluate ... --protocol all` adds them)."
        )
    others = sorted(available - {shown})
    if others:
        sentence += f" Rows `{MODEL_METHOD} (<protocol>)` are the same model under {', '.join(others)}."
    return rows, sentence


def models_section(results: Path, project_root: Path | None = None) -> str:
    import pandas as pd

    from hinet.checkpoint import read_metadata
    from hinet.evaluate import MODEL_METHOD

    project_root = results.parent if project_root is None else project_root
    lines = [
        MODELS_START,
        "## Shipped models (the app's and `python -m hinet.restore`'s)",
        "",
        "`results/models/<task>.safetensors` is a task's default; `<task>_<suffix>.safetensors` are other "
        "variants shipped for comparison. "
        "Generated by `python scripts/make_results_readme.py` from `results/eval/<name>.csv` and each "
        "file's metadata. Each model was trained with the commands of the rebuild block above (its run is "
        "named in its section), its best validation checkpoint kept (on the validation set of its run), "
        "then evaluated once on the test set with the classical baselines in the same run, at every "
        "evaluation level of its task: `python -m hinet.evaluate results/models/<name>.safetensors "
        "--task-levels --protocol all --baselines --out-csv results/eval/<name>.csv` (older files: one level, `--level`, whole images only). "
        "Seconds are per image on the machine named. Bars are judged per level from that CSV.",
        "",
    ]
    for csv_path in sorted((results / "eval").glob("*.csv")):
        rows = pd.read_csv(csv_path)
        task, name = rows["task"].iloc[0], csv_path.stem
        model_file = shipped_models_dir(results) / f"{name}.safetensors"
        meta = read_metadata(model_file) if model_file.exists() else {}
        rows, scored_as = rows_under_default_stats(rows, meta)
        norm = meta.get("config", {}).get("norm", "?")
        precision = meta.get("precision", "precision not recorded")
        patch, assumed = training_patch(meta)
        val = meta.get("val_psnr")
        checkpoint = f"best validation PSNR {float(val):.2f} dB" if val not in (None, "") else "no validation score"
        role = "the default" if name == task else "a comparison variant"
        levels = list(dict.fromkeys(rows["strength"]))
        lines += [
            f"### {name} ({task}, {role})",
            "",
            f"Test set: {rows[rows['image'] != 'mean']['image'].nunique()} sporco images, seed "
            f"{rows['seed'].iloc[0]}; protocol: {rows['protocol'].iloc[0]}. "
            f"Model: `results/models/{name}.safetensors` (norm `{norm}`, trained as `{meta.get('source_run') or meta.get('run', '?')}`), "
            f"checkpoint of step {meta.get('steps', '?')}{started_from(meta)} ({checkpoint}), "
            f"{float(meta.get('train_seconds', 'nan')) / 60:.0f} min of training to that step on "
            f"{meta.get('device', '?')} ({precision}), blind={meta.get('blind', '?')}, training patch "
            + (f"{patch} px." if assumed is None else f"not recorded ({patch} px assumed)."),
            "",
            default_stats_line(meta) + " " + scored_as,
            "",
            "| method | " + " | ".join(f"`{level}` PSNR / SSIM / s" for level in levels) + " |",
            "|---|" + "---|" * len(levels),
        ]
        means = rows[rows["image"] == "mean"]
        for method in dict.fromkeys(means["method"]):
            cells = []
            for level in levels:
                row = means[(means["method"] == method) & (means["strength"] == level)]
                cells.append(
                    "n/a"
                    if row.empty
                    else f"{row['psnr'].iloc[0]:.2f} / {row['ssim'].iloc[0]:.4f} / {row['seconds'].iloc[0]:.2f}"
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
        for bar in MODEL_BARS[task]:
            lines.append(f"- Bar: {bar.describe(task)}: {judge_bar(bar, task, rows)}.")
        reference = GAP_REFERENCES.get(task)
        for level in levels if reference else ():
            at = means[means["strength"] == level].set_index("method")
            if MODEL_METHOD in at.index and reference in at.index:
                gap = at.loc[MODEL_METHOD, "psnr"] - at.loc[reference, "psnr"]
                lines.append(f"- Gap to {reference} given the true kernel at `{level}`: {gap:+.2f} dB.")
        source_run = meta.get("source_run")
        curve = curve_verdict(project_root / source_run / "log.jsonl") if source_run else None
        if curve is None:
            lines.append("- Learning curve: no training log shipped.")
        elif curve["points"]:
            plot = results / "plots" / f"model_{name}_learning_curve.png"
            config_file = project_root / source_run / CONFIG_FILE
            run_config = (yaml.safe_load(config_file.read_text()) or {}) if config_file.is_file() else {}
            level = data.format_level(data.validate_strength(task, **(run_config.get("strength") or {})))
            references = validation_references(results, task, level, project_root / source_run)
            plot_learning_curve(curve["points"], f"{name}: validation PSNR (run {source_run})", plot, references)
            lines += [
                f"- Learning curve ({curve['steps']} steps, {curve['wall'] / 3600:.1f} h, best {curve['best']:.2f} dB "
                f"on validation): {curve['verdict']}.",
                "",
                f"![{name} learning curve]({_relative(plot, results)})",
            ]
        else:
            lines.append(f"- Learning curve: {curve['verdict']}.")
        lines.append("")
    lines.append(MODELS_END)
    return "\n".join(lines)


def plot_pilot_curves(curves: Mapping[str, list], path: Path, references: Mapping[str, float], title: str) -> None:
    """Validation PSNR against training time, one line per pilot candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2), dpi=100)
    for name, points in curves.items():
        _, walls, psnrs = zip(*points)
        axes.plot([w / 60 for w in walls], psnrs, marker="o", markersize=3, label=name)
    _draw_references(axes, references)
    _finish_validation_plot(figure, axes, "training time (minutes, this machine)", title, path)


def _training_sources(run_dir: Path) -> str | None:
    """ "photos 42%, dead_leaves 43%, ..." from the run's data_sources.json (shares of the sampled area)."""
    path = run_dir / DATA_FILE
    if not path.is_file():
        return None
    shares = json.loads(path.read_text()).get("area_share") or {}
    if not shares:
        return None
    listed = sorted(shares.items(), key=lambda item: -float(item[1]))
    return ", ".join(f"{source} {float(share):.0%}" for source, share in listed) + " of the sampled area"


def _per_candidate(values: dict[str, str | None], what: str) -> str:
    """One value when every candidate has it ("the same for every candidate"), else each candidate's;
    a None value is one the candidate has not recorded (yet)."""
    shown = {name: value or f"{what} not recorded" for name, value in values.items()}
    if not shown:
        return f"{what} not recorded"
    if len(set(values.values())) == 1 and None not in values.values():
        return f"{next(iter(shown.values()))}, the same for every candidate"
    return "; ".join(f"{name}: {value}" for name, value in shown.items())


def _run_seed(run_dir: Path) -> str | None:
    saved = read_run_config(run_dir)  # None without a readable config
    return f"seed {saved.get('seed', 0)}" if saved else None


def in_progress_verdict(curve: dict | None, steps: int, planned: int) -> str:
    """A long run's curve verdict; a dip part-way through its schedule is not called flat (the learning rate
    is still high, and the bar's rule judges the last 20% of the whole run)."""
    if curve is None:
        return "no log"
    if curve.get("flattened") and steps < planned:
        return (
            f"no gain over the last 20% of its steps so far ({curve['gain']:+.3f} dB) at {steps / planned:.0%} "
            "of its schedule: judged when it ends"
        )
    return str(curve["verdict"])


def started_from(init: Mapping) -> str:
    """Where a run that began from other weights (`init_weights` of its config) started, for its steps."""
    if not init.get("init_weights"):
        return ""
    steps, sha = init.get("init_steps"), str(init.get("init_sha256") or "?")[:12]
    # the file named may since have been replaced (by this very run, once shipped): its run says what it was
    source = f", trained as `{init['init_source_run']}`" if init.get("init_source_run") else ""
    return f" (after {'?' if steps is None else steps} steps: from `{init['init_weights']}`{source}, sha256 {sha}...)"


LONG_RUNS_START, LONG_RUNS_END = "<!-- long_runs:start -->", "<!-- long_runs:end -->"


def long_runs_section(results: Path, plots_dir: Path, readme_dir: Path, configs_dir: Path = CONFIGS_DIR) -> str:
    """The long task defaults as they train (`configs/default_<task>.yaml`, runs in results/defaults/<task>):
    steps done of planned, best validation PSNR beside the classical methods on the same pairs, whether the
    curve still climbs, where and in which precision each stretch trained, and whether it shipped."""
    shipped = shipped_source_runs(results)
    lines = [
        LONG_RUNS_START,
        "## Long task defaults, as they train",
        "",
        "Generated from `results/defaults/<task>/` (`train_state.json`, `log.jsonl`, `data_sources.json`) of the "
        "runs `scripts/train_defaults.sh` trains (`python -m hinet.train --config configs/default_<task>.yaml`, "
        "resumable). Validation only: PSNR on the held-out photo crops at the task's default level, the "
        "classical methods measured on the very same pairs (`scripts/validation_baselines.py`); the test set "
        "is scored only once a run ships. Each run's peak learning rate is the learning-rate pilot's choice "
        "unless its `configs/default_<task>.yaml` sets another and says why (an early check with "
        "`scripts/early_lr_check.sh`, whose logs are in `results/defaults/<task>_lr_check/`).",
        "",
    ]
    table = []
    for name, task in TASKS.items():
        run_dir = results / DEFAULTS_DIR / name
        state_path, config_path = run_dir / STATE_JSON_FILE, run_dir / CONFIG_FILE
        plot = plots_dir / f"defaults_{name}_learning_curve.png"
        if not state_path.is_file() or not config_path.is_file():
            plot.unlink(missing_ok=True)  # the curve of a run that started over or moved away
            continue
        state = json.loads(state_path.read_text())
        config = yaml.safe_load(config_path.read_text()) or {}
        best = state.get("best") or {}
        level = data.format_level(task.defaults)
        references = validation_references(results, name, level, run_dir)
        classical = {m: v for m, v in references.items() if m != "input"}
        top = max(classical.items(), key=lambda item: item[1]) if classical else None
        gap = (
            f"{best['psnr'] - top[1]:+.2f} dB vs {top[0]}"
            if top and best.get("psnr") is not None
            else ("no classical method for this task" if not task.baselines else "no classical reference measured")
        )
        if "input" in references and best.get("psnr") is not None:  # the bar of some tasks; a classical
            gap += f", {best['psnr'] - references['input']:+.2f} dB vs input"  # method can fall below it
            if top and top[1] < references["input"]:  # then beating it says little: say so beside it
                gap += f" ({top[0]} itself scores {top[1] - references['input']:+.2f} dB vs input on these pairs)"
        curve = curve_verdict(run_dir / LOG_FILE)
        if curve and curve["points"]:
            plot_learning_curve(curve["points"], f"{name} default (in training): validation PSNR", plot, references)
            lines += [f"![{name} learning curve]({_relative(plot, readme_dir)})", ""]
        stretches = "; ".join(
            f"from step {segment['from_step']}: {str(segment['device']).removeprefix('cpu: ')}, {segment['precision']}"
            for segment in state.get("segments", [])
        )
        steps, planned = int(state["step"]), planned_steps(run_dir, config, results / DEFAULTS_DIR, configs_dir)
        table.append(
            [
                name,
                f"{steps} / {planned}" + started_from(state.get("init") or {}),
                f"{(config.get('optimizer') or {}).get('lr', 'n/a')}",
                f"{state['train_seconds'] / 3600:.1f}",
                "n/a" if best.get("psnr") is None else f"{best['psnr']:.2f} (step {best['step']})",
                gap,
                in_progress_verdict(curve, steps, planned),
                stretches or "not recorded",
                "yes" if run_dir.resolve() in shipped else "not yet",
            ]
        )
    if not table:
        lines += ["No long run has started yet.", "", LONG_RUNS_END]
        return "\n".join(lines)
    header = ["task", "steps done / planned", "lr", "training hours", "best val PSNR (dB)"]
    header += ["vs the best classical, input"]
    header += ["learning curve", "trained on", "shipped"]
    lines += [rt.to_markdown(header, table), "", LONG_RUNS_END]
    return "\n".join(lines)


def pilot_markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def pilot_section(results: Path, plots_dir: Path, readme_dir: Path, pilot_file: Path) -> str:
    """A defaults pilot (scripts/pilot_defaults.py): every candidate's row of its table, its validation
    curves, the winner."""
    pilot = yaml.safe_load(pilot_file.read_text())
    name, title = str(pilot.get("name", "pilot")), str(pilot.get("title", "pilot"))
    writes = str(pilot.get("writes", "default_shape.yaml"))
    start, end = pilot_markers(name)
    table_path = results / DEFAULTS_DIR / f"{name}.csv"
    budget, tie = float(pilot["budget_minutes"]), float(pilot["tie_db"])
    task = TASKS[pilot["task"]]
    blind = ", ".join(f"{name} {low:g}-{high:g}" for name, (low, high) in task.blind_ranges.items())
    default = ", ".join(f"{name} {value:g}" for name, value in task.defaults.items())

    with open(table_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    runs_dir = results / DEFAULTS_DIR / name
    costs_path = runs_dir / "costs.json"
    costs = json.loads(costs_path.read_text()) if costs_path.is_file() else {}
    finished = [row for row in rows if row["status"] == "done" and row["best_val_psnr"]]
    top = max((float(row["best_val_psnr"]) for row in finished), default=0.0)
    # the pilot's rule (scripts/pilot_defaults.choose): the first candidate within the tie of the best, once all ran
    winner = next((row for row in finished if float(row["best_val_psnr"]) >= top - tie), None)
    winner = winner if len(finished) == len(rows) else None
    first_run = runs_dir / f"pilot_{rows[0]['candidate']}" if rows else runs_dir
    candidate_runs = {row["candidate"]: runs_dir / f"pilot_{row['candidate']}" for row in rows}
    sources = _per_candidate({n: _training_sources(d) for n, d in candidate_runs.items()}, "training images")
    seeds = _per_candidate({n: _run_seed(d) for n, d in candidate_runs.items()}, "seeds")
    lines = [
        start,
        f"## Default models: {title}",
        "",
        f"Generated from `results/defaults/{name}.csv`, written by `python scripts/pilot_defaults.py "
        f"configs/{pilot_file.name}`. Each candidate is `configs/{pilot['base']}` (blind {task.name}, {blind} "
        f"drawn per patch; training images: {sources}) with the overrides "
        f"shown, trained for the **same time** ({budget:g} minutes of its own seconds per step, so a costlier step gets "
        f"fewer steps), its cosine schedule annealed over exactly those steps, once each ({seeds}: one seed, so a "
        "small gap may not survive another). Scored on validation only: PSNR "
        f"({task.protocol.describe()}) of the best checkpoint on the held-out photo crops at {default}; the test "
        "set is not used here. The ranking holds at this budget: a run many times longer may rank the "
        "candidates differently, which a pilot does not measure.",
        "",
    ]
    if costs:
        reference = ", ".join(costs.get("reference", []))
        measured = (
            f"Seconds per step were measured for all candidates together ({costs.get('timing_steps')} interleaved "
            f"optimizer steps each, `{_relative(costs_path, readme_dir.parent)}`)"
        )
        if pilot.get("equal_cost"):
            measured += "; every candidate is given their mean, so equal time is equal steps."
        elif reference:
            measured += (
                f", then scaled by {costs['scale']:.3f} to the candidate whose steps were fixed before that "
                f"measurement ({reference})."
            )
        else:
            measured += "."
        lines += [measured, ""]
    lines += [
        "The budget is a step count planned from that cost; the wall time column is what the training took on "
        "the shared 2-core machine, slowed by whatever else ran beside it.",
        "",
        "| candidate | overrides | s/step | steps | wall time (min) | best val PSNR (dB) | input (dB) | best step |"
        " device | status |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        seconds = float(row["train_seconds"] or 0)
        best = f"**{row['best_val_psnr']}** (winner)" if row is winner else ""
        lines.append(
            f"| {row['candidate']} | `{row['overrides']}` | {row['seconds_per_step']} | {row['steps']} | "
            f"{seconds / 60:.1f} | {best or row['best_val_psnr']} | {row['input_val_psnr']} | {row['best_step']} | "
            f"{row['device']} {row['precision']} | {row['status']} |"
        )
    curves = {}
    for row in rows:
        verdict = curve_verdict(runs_dir / f"pilot_{row['candidate']}" / "log.jsonl")
        if verdict and verdict["points"]:
            curves[row["candidate"]] = verdict["points"]
    level = data.format_level(task.defaults)
    references = validation_references(results, task.name, level, first_run)  # every candidate: the same pairs
    if references:
        lines += [
            "",
            "On the same validation pairs (`python scripts/validation_baselines.py configs/default_base.yaml "
            f"--set task={task.name}`): "
            + ", ".join(f"{method} {value:.2f} dB" for method, value in sorted(references.items(), key=lambda i: -i[1]))
            + ".",
        ]
    if curves:
        plot = plots_dir / f"defaults_{name}_validation.png"
        plot_pilot_curves(curves, plot, references, f"Defaults {title}: blind {task.name}, equal training time")
        lines += ["", f"![validation PSNR vs training time]({_relative(plot, readme_dir)})"]
    lines.append("")
    if len(finished) < len(rows):
        lines.append(f"{len(finished)} of {len(rows)} candidates finished: no choice yet.")
    else:
        lines.append(
            f"The winner's overrides are in `configs/{writes}` (generated), which the task defaults build on "
            f"(`configs/default_<task>.yaml`); a candidate listed earlier wins within the pilot's tie ({tie:g} dB)."
        )
    lines.append(end)
    return "\n".join(lines)


def write_section(readme: Path, section: str, start: str = START, end: str = END, after: str | None = None) -> None:
    """Replace the text between `start` and `end`; without them, insert the section after the marker
    `after` (when given and present) or append it."""
    if readme.is_file():
        text = readme.read_text()
        if start in text and end in text:
            head, rest = text.split(start, 1)
            tail = rest.split(end, 1)[1]
            text = head + section + tail
        elif after is not None and after in text:
            head, tail = text.split(after, 1)
            text = head + after + "\n\n" + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = "# Results\n\n" + section + "\n"
    readme.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=Path("results"), help="the results folder")
    parser.add_argument("--csv", type=Path, help="default: RESULTS/ablation.csv")
    parser.add_argument("--runs", type=Path, help="run folders with log.jsonl; default: RESULTS/runs")
    parser.add_argument("--out", type=Path, help="default: RESULTS/README.md")
    parser.add_argument("--plots", type=Path, help="default: RESULTS/plots")
    args = parser.parse_args(argv)
    ablation_csv = args.csv or args.results / ABLATION_FILE
    out = args.out or args.results / "README.md"
    if (args.results / "eval").is_dir():
        write_section(out, models_section(args.results), MODELS_START, MODELS_END)
        print(f"wrote the default-models section of {out}")
    after = MODELS_END
    for pilot_file in PILOT_FILES:
        name = str(yaml.safe_load(pilot_file.read_text()).get("name", "pilot"))
        if (args.results / DEFAULTS_DIR / f"{name}.csv").is_file():
            section = pilot_section(args.results, args.plots or args.results / "plots", out.parent, pilot_file)
            write_section(out, section, *pilot_markers(name), after=after)
            print(f"wrote the {name} section of {out}")
        after = pilot_markers(name)[1]
    plots = args.plots or args.results / "plots"
    if any((args.results / DEFAULTS_DIR / task / STATE_JSON_FILE).is_file() for task in TASKS):
        section = long_runs_section(args.results, plots, out.parent)
        write_section(out, section, LONG_RUNS_START, LONG_RUNS_END, after=after)
        print(f"wrote the long-runs section of {out}")
    try:
        table = rt.read_ablation_csv(ablation_csv)
        section = ablation_section(
            table, args.runs or results_runs_dir(args.results), args.plots or args.results / "plots", out.parent
        )
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    write_section(out, section)
    print(f"wrote the ablation section of {out} ({len(table)} rows, {table['run'].nunique()} runs)")
    write_section(
        out,
        ladder_section(table, args.results, args.plots or args.results / "plots", out.parent),
        LADDER_START,
        LADDER_END,
        after=END,
    )
    print(f"wrote the budget-ladder section of {out}")
    before_path = args.results / BEFORE_CSV
    if before_path.is_file():
        write_section(out, rerun_section(rt.read_ablation_csv(before_path), table), RERUN_START, RERUN_END)
        print(f"wrote the before/after section of {out}")
    stats_path = args.results / STATS_CSV
    if stats_path.is_file():
        import pandas as pd

        write_section(out, stats_section(pd.read_csv(stats_path), table), STATS_START, STATS_END)
        print(f"wrote the statistics-protocol section of {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
