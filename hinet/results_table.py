"""Statistics of the ablation table (`results/ablation.csv`): the one implementation behind both the app's
ablation explorer and `scripts/make_results_readme.py`, so the numbers a user sees and the numbers the
README publishes cannot drift apart.

The table has one row per (training run, test image). A *variant* is trained with several seeds; for each
variant we report the mean and the sample standard deviation over seeds of the image-averaged PSNR/SSIM,
and its difference to a baseline variant *paired* by (seed, image): two runs with the same seed saw the same
initialisation seed and batches, and two rows with the same image saw the same degraded input, so pairing
removes most of the image-to-image and seed-to-seed spread from the comparison. The 95% interval of a
paired difference is a percentile bootstrap of its mean with a fixed generator seed, so reruns print the
same interval.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hinet.errors import ResultsError

REQUIRED_COLUMNS = (
    "run", "ablation", "variant", "task", "level", "seed", "norm", "norm_ratio", "hin_position_left",
    "hin_position_right", "norm_in_decoder", "norm_affine", "wf", "depth", "steps", "train_seconds", "params",
    "macs", "latency_ms", "device", "image", "psnr", "ssim",
)
# The model/training knobs that define a variant; the "diff only" view compares these with the baseline.
KNOB_COLUMNS = (
    "norm", "norm_ratio", "hin_position_left", "hin_position_right", "norm_in_decoder", "norm_affine", "wf",
    "depth", "steps",
)
NUMERIC_COLUMNS = (
    "seed", "norm_ratio", "hin_position_left", "hin_position_right", "wf", "depth", "steps", "train_seconds",
    "params", "macs", "latency_ms", "psnr", "ssim",
)
BOOL_COLUMNS = ("norm_in_decoder", "norm_affine")
COST_COLUMNS = ("params", "macs", "latency_ms", "train_seconds")
LOG_COLUMNS = ("step", "loss", "lr", "val_psnr", "val_ssim", "wall")

DEFAULT_RESAMPLES = 2000
DEFAULT_BOOTSTRAP_SEED = 0
DEFAULT_CONFIDENCE = 0.95
PSNR_DIGITS = 2
SSIM_DIGITS = 4


# ----------------------------------------------------------------------------------------------------
# Reading


def read_ablation_csv(path: str | Path) -> pd.DataFrame:
    """Read and check `results/ablation.csv`; raises `ResultsError` with a plain message when it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path} does not exist; run the ablation sweep first (python -m hinet.sweep ...)")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ResultsError(f"{path} is not a readable CSV file ({str(error).strip()})") from None
    return validate_ablation_table(table, source=str(path))


def validate_ablation_table(table: pd.DataFrame, source: str = "the ablation table") -> pd.DataFrame:
    """Check the columns and types of an ablation table; returns a copy with numeric and boolean columns parsed."""
    missing = [column for column in REQUIRED_COLUMNS if column not in table.columns]
    if missing:
        raise ResultsError(
            f"{source} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"expected columns: {', '.join(REQUIRED_COLUMNS)}"
        )
    if table.empty:
        raise ResultsError(f"{source} has no rows; run the ablation sweep to fill it")
    table = table.copy()
    for column in NUMERIC_COLUMNS:
        parsed = pd.to_numeric(table[column], errors="coerce")
        # norm_ratio is legitimately empty for norms that use their own default ratio
        bad = parsed.isna() & table[column].notna() if column == "norm_ratio" else parsed.isna()
        if column in ("psnr", "ssim", "seed") and bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ResultsError(
                f"{source}: column {column!r} has a value that is not a number in data row {row + 1} "
                f"({table[column].iloc[row]!r})"
            )
        table[column] = parsed
    for column in BOOL_COLUMNS:
        table[column] = table[column].map(_parse_bool)
    for column in ("run", "ablation", "variant", "task", "level", "image", "norm", "device"):
        table[column] = table[column].astype(str)
    table["seed"] = table["seed"].astype(int)
    duplicated = table.duplicated(["ablation", "task", "level", "variant", "seed", "image"])
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise ResultsError(
            f"{source} has two rows for variant {row['variant']!r}, seed {row['seed']}, image {row['image']!r} "
            f"in ablation {row['ablation']!r}; each (run, image) pair must appear once"
        )
    return table


def _parse_bool(value):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    return None


def read_run_log(path: str | Path) -> pd.DataFrame:
    """Read one run's `log.jsonl` into a frame with `LOG_COLUMNS` (missing values are NaN)."""
    path = Path(path)
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise ResultsError(f"cannot read the run log {path} ({error.strerror})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ResultsError(f"{path} line {number} is not JSON; the run log may be truncated") from None
        if isinstance(record, dict) and "step" in record:
            records.append({column: record.get(column) for column in LOG_COLUMNS})
    frame = pd.DataFrame.from_records(records, columns=list(LOG_COLUMNS))
    return frame.apply(pd.to_numeric, errors="coerce")


def read_run_logs(runs_dir: str | Path, runs) -> pd.DataFrame:
    """`log.jsonl` of each named run under `runs_dir`, concatenated with a `run` column; absent logs are skipped."""
    frames = []
    for run in runs:
        path = Path(runs_dir) / str(run) / "log.jsonl"
        if path.is_file():
            frames.append(read_run_log(path).assign(run=str(run)))
    if not frames:
        return pd.DataFrame(columns=["run", *LOG_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------------------------------
# Selecting


def select(table: pd.DataFrame, task=None, level=None, ablation=None, variants=None, seeds=None) -> pd.DataFrame:
    """Rows matching every filter that is given (None = no filter; lists select any of their values)."""
    mask = pd.Series(True, index=table.index)
    for column, wanted in (("task", task), ("level", level), ("ablation", ablation)):
        if wanted is not None:
            mask &= table[column].astype(str) == str(wanted)
    if variants is not None:
        mask &= table["variant"].isin([str(v) for v in variants])
    if seeds is not None:
        mask &= table["seed"].isin([int(s) for s in seeds])
    return table[mask]


def variant_order(table: pd.DataFrame) -> list[str]:
    """Variants in the order they first appear (the sweep's order, which groups related variants)."""
    return list(dict.fromkeys(table["variant"]))


def variant_configs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (index) with its knob values (`KNOB_COLUMNS`), in `variant_order`."""
    configs = table.drop_duplicates("variant").set_index("variant")[list(KNOB_COLUMNS)]
    return configs.loc[variant_order(table)]


def _effective_ratio(row) -> float:
    """The normalized fraction a variant really uses (an empty ratio means the norm's own default)."""
    if row["norm"] == "none":
        return 0.0
    ratio = row["norm_ratio"]
    if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
        return 0.5 if row["norm"] == "half_instance" else 1.0
    return float(ratio)


def default_baseline(table: pd.DataFrame) -> str:
    """The HIN variant of the table: half-instance norm, ratio 0.5, every encoder level, no decoder norm, affine.

    Among several candidates the widest placement wins; with no HIN variant at all the first variant is used.
    """
    configs = variant_configs(table).reset_index()
    if configs.empty:
        raise ResultsError("no variant is selected; pick at least one variant")
    configs["ratio"] = configs.apply(_effective_ratio, axis=1)
    hin = configs[(configs["norm"] == "half_instance") & np.isclose(configs["ratio"], 0.5)]
    if hin.empty:
        return str(configs["variant"].iloc[0])
    score = (
        (hin["norm_in_decoder"] != True).astype(int) * 4  # noqa: E712 (None must count as False)
        + (hin["norm_affine"] != False).astype(int) * 2  # noqa: E712
        + (hin["hin_position_right"] - hin["hin_position_left"]).fillna(0) / 100
    )
    return str(hin.loc[score.idxmax(), "variant"])


# ----------------------------------------------------------------------------------------------------
# Statistics


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Image-averaged PSNR and SSIM of each (variant, seed): the per-run score the seed statistics use."""
    means = table.groupby(["variant", "seed"], sort=False)[["psnr", "ssim"]].mean().reset_index()
    return means


def paired_differences(table: pd.DataFrame, variant: str, baseline: str, metric: str = "psnr") -> pd.DataFrame:
    """`metric(variant) - metric(baseline)` for every (seed, image) both have; columns seed, image, diff."""
    keys = ["seed", "image"]
    left = table[table["variant"] == variant][keys + [metric]]
    right = table[table["variant"] == baseline][keys + [metric]]
    merged = left.merge(right, on=keys, suffixes=("_variant", "_baseline"))
    merged["diff"] = merged[f"{metric}_variant"] - merged[f"{metric}_baseline"]
    return merged[keys + ["diff"]]


def bootstrap_mean_ci(
    values,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`; (nan, nan) with fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    resampled = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return (float(low), float(high))


def summarize(
    table: pd.DataFrame,
    baseline: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """One row per variant: seed statistics, paired differences to `baseline` with bootstrap CIs, and costs.

    Columns: variant, n_seeds, n_images, psnr_mean, psnr_std, ssim_mean, ssim_std, delta_psnr,
    delta_psnr_low, delta_psnr_high, delta_ssim, delta_ssim_low, delta_ssim_high, n_pairs, params, macs,
    latency_ms, train_seconds. Standard deviations are over seeds (ddof 1; NaN with one seed).
    """
    if baseline not in set(table["variant"]):
        raise ResultsError(f"baseline {baseline!r} is not among the selected variants; pick one of "
                           f"{', '.join(variant_order(table))}")
    per_seed = seed_means(table)
    per_run_costs = table.drop_duplicates(["variant", "seed"]).groupby("variant")[list(COST_COLUMNS)].mean()
    rows = []
    order = variant_order(table)
    for variant in [baseline] + [v for v in order if v != baseline]:  # the reference row first
        seeds = per_seed[per_seed["variant"] == variant]
        row = {
            "variant": variant,
            "n_seeds": int(len(seeds)),
            "n_images": int(table.loc[table["variant"] == variant, "image"].nunique()),
        }
        for metric in ("psnr", "ssim"):
            row[f"{metric}_mean"] = float(seeds[metric].mean())
            row[f"{metric}_std"] = float(seeds[metric].std(ddof=1)) if len(seeds) > 1 else math.nan
        for metric in ("psnr", "ssim"):
            diffs = paired_differences(table, variant, baseline, metric)["diff"].to_numpy()
            row["n_pairs"] = int(diffs.size)
            row[f"delta_{metric}"] = float(diffs.mean()) if diffs.size else math.nan
            if variant == baseline:
                low = high = 0.0
            else:
                low, high = bootstrap_mean_ci(diffs, n_resamples, confidence, seed)
            row[f"delta_{metric}_low"], row[f"delta_{metric}_high"] = low, high
        for column in COST_COLUMNS:
            row[column] = float(per_run_costs.loc[variant, column])
        rows.append(row)
    return pd.DataFrame(rows)


def per_image_delta(table: pd.DataFrame, baseline: str, metric: str = "psnr") -> pd.DataFrame:
    """Paired difference to the baseline averaged over seeds: rows are images, columns are the other variants."""
    columns = {}
    for variant in variant_order(table):
        if variant == baseline:
            continue
        diffs = paired_differences(table, variant, baseline, metric)
        columns[variant] = diffs.groupby("image")["diff"].mean()
    frame = pd.DataFrame(columns)
    frame.index.name = "image"
    return frame


def config_differences(table: pd.DataFrame, baseline: str, only_differing: bool = True) -> pd.DataFrame:
    """The knobs of every variant next to the baseline's.

    With `only_differing`, keep only the knobs where some variant differs from the baseline and blank the
    cells equal to the baseline's value, so each row shows exactly what that variant changes.
    """
    configs = variant_configs(table)
    if baseline not in configs.index:
        raise ResultsError(f"baseline {baseline!r} is not among the selected variants")
    configs = configs.astype(object).where(configs.notna(), None)
    reference = configs.loc[baseline]
    differs = configs.apply(lambda column: column.map(lambda v: not _same(v, reference[column.name])))
    if only_differing:
        keep = [column for column in configs.columns if differs[column].any()]
        shown = configs[keep].copy()
        for column in keep:
            shown[column] = [
                "" if (variant != baseline and not differs.loc[variant, column]) else _format_knob(value)
                for variant, value in shown[column].items()
            ]
        configs = shown
    else:
        configs = configs.map(_format_knob)
    configs.insert(0, "role", ["baseline" if v == baseline else "" for v in configs.index])
    return configs.reset_index()


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b))
        except (TypeError, ValueError):
            return False
    return a == b


def _format_knob(value) -> str:
    if value is None:
        return "default"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pareto_front(cost, quality) -> np.ndarray:
    """Boolean mask of points not dominated by another (lower or equal cost and higher or equal quality)."""
    cost = np.asarray(cost, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    on_front = np.ones(cost.size, dtype=bool)
    for i in range(cost.size):
        dominated_by = (cost <= cost[i]) & (quality >= quality[i]) & ((cost < cost[i]) | (quality > quality[i]))
        on_front[i] = not dominated_by.any()
    return on_front


def validation_curves(logs: pd.DataFrame, run_variants: dict[str, str], metric: str = "val_psnr") -> pd.DataFrame:
    """Spread across seeds of a logged metric per (variant, step): columns variant, step, mean, std, min, max, n."""
    columns = ["variant", "step", "mean", "std", "min", "max", "n"]
    if logs.empty:
        return pd.DataFrame(columns=columns)
    points = logs[logs[metric].notna()].assign(variant=lambda f: f["run"].map(run_variants))
    points = points[points["variant"].notna()]
    if points.empty:
        return pd.DataFrame(columns=columns)
    grouped = points.groupby(["variant", "step"], sort=False)[metric]
    curves = grouped.agg(["mean", "std", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
    order = {v: i for i, v in enumerate(dict.fromkeys(run_variants.values()))}
    curves = curves.sort_values(["variant", "step"], key=lambda s: s.map(order) if s.name == "variant" else s)
    return curves[columns].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------
# Presenting


def display_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The summary rounded and renamed for people; numeric columns stay numeric so a table can sort them."""
    def rounded(column, digits):
        return summary[column].round(digits)

    return pd.DataFrame({
        "variant": summary["variant"] + np.where(summary["variant"] == baseline, " (baseline)", ""),
        "seeds": summary["n_seeds"],
        "PSNR (dB)": rounded("psnr_mean", PSNR_DIGITS),
        "PSNR std": rounded("psnr_std", PSNR_DIGITS),
        "SSIM": rounded("ssim_mean", SSIM_DIGITS),
        "SSIM std": rounded("ssim_std", SSIM_DIGITS),
        "Δ PSNR (dB)": rounded("delta_psnr", PSNR_DIGITS + 1),
        "Δ 95% CI": ["reference" if variant == baseline else _interval(lo, hi, PSNR_DIGITS + 1) for variant, lo, hi in
                     zip(summary["variant"], summary["delta_psnr_low"], summary["delta_psnr_high"])],
        "Δ SSIM": rounded("delta_ssim", SSIM_DIGITS),
        "params": summary["params"].round(0).astype("Int64"),
        "MACs (G)": (summary["macs"] / 1e9).round(3),
        "latency (ms)": rounded("latency_ms", 1),
        "train time (s)": rounded("train_seconds", 0),
    })


def markdown_summary(summary: pd.DataFrame, baseline: str) -> str:
    """The summary as a Markdown table with `mean ± std` cells (the README's and the app's export format)."""
    header = ["variant", "seeds", "PSNR (dB)", "SSIM", f"Δ PSNR vs {baseline} [95% CI]", "Δ SSIM", "params",
              "MACs (G)", "latency (ms)", "train time (s)"]
    rows = []
    for _, row in summary.iterrows():
        name = f"**{row['variant']}** (baseline)" if row["variant"] == baseline else row["variant"]
        if row["variant"] == baseline:
            delta = "0 (reference)"
        else:
            delta = f"{_signed(row['delta_psnr'], PSNR_DIGITS + 1)} {_interval(row['delta_psnr_low'], row['delta_psnr_high'], PSNR_DIGITS + 1)}"
        rows.append([
            name,
            str(row["n_seeds"]),
            _mean_std(row["psnr_mean"], row["psnr_std"], PSNR_DIGITS),
            _mean_std(row["ssim_mean"], row["ssim_std"], SSIM_DIGITS),
            delta,
            "0" if row["variant"] == baseline else _signed(row["delta_ssim"], SSIM_DIGITS),
            f"{row['params']:,.0f}",
            f"{row['macs'] / 1e9:.3f}",
            f"{row['latency_ms']:.1f}",
            f"{row['train_seconds']:.0f}",
        ])
    return to_markdown(header, rows)


def to_markdown(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells are escaped)."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_to_markdown(frame: pd.DataFrame) -> str:
    return to_markdown(list(map(str, frame.columns)), frame.astype(object).where(frame.notna(), "").values.tolist())


def frame_to_csv(frame: pd.DataFrame) -> str:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def _mean_std(mean: float, std: float, digits: int) -> str:
    if math.isnan(std):
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _signed(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:+.{digits}f}"


def _interval(low: float, high: float, digits: int) -> str:
    if math.isnan(low) or math.isnan(high):
        return "n/a (needs 2+ pairs)"
    return f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def protocol_text(table: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES,
                  confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_BOOTSTRAP_SEED) -> str:
    """How the numbers of `table` were measured and summarised, stated from the table itself."""
    images = sorted(set(table["image"]))
    seeds = sorted(set(table["seed"]))
    tasks = ", ".join(f"{t} at level {lv}" for t, lv in table[["task", "level"]].drop_duplicates().values)
    steps = sorted({int(s) for s in table["steps"].dropna()})
    devices = sorted(set(table["device"]))
    metric = " ".join(f"{task}: {_metric_protocol(task)}" for task in dict.fromkeys(table["task"]))
    return "\n".join([
        f"- **Degradation:** {tasks} (`hinet.data.degrade`, the same function training used), applied to the "
        f"clean test images with a fixed generator.",
        f"- **Test images ({len(images)}):** {', '.join(images)}; never used for training or validation.",
        f"- **Metrics:** {metric} PSNR shown with {PSNR_DIGITS} decimals, SSIM with {SSIM_DIGITS}.",
        f"- **Seeds:** {', '.join(map(str, seeds))}; each variant trained once per seed for "
        f"{', '.join(map(str, steps))} steps on {', '.join(devices)}.",
        f"- **Mean ± std** are over seeds of the image-averaged score (sample std, ddof 1). **Δ** is the mean "
        f"difference to the baseline paired by (seed, image); its interval is a {confidence:.0%} percentile "
        f"bootstrap of that mean ({n_resamples} resamples, generator seed {seed}).",
        "- **Costs:** parameters; MACs of one 256x256 forward pass (FlopCounterMode / 2); latency of one "
        "forward pass on the device named above; train time is the wall-clock time of the run.",
    ])


def _metric_protocol(task: str) -> str:
    from hinet.metrics import default_protocol

    return f"PSNR/SSIM on {default_protocol(task).describe()} (`hinet.metrics`)."


# ----------------------------------------------------------------------------------------------------
# The paper's claims, checked against the table


@dataclass(frozen=True)
class ClaimCheck:
    claim: str  # the paper's statement
    verdict: str  # "reproduces", "does not reproduce", "inconclusive" or "not tested"
    evidence: str  # the numbers behind the verdict


def _comparison(table: pd.DataFrame, variant: str, reference: str, n_resamples: int, seed: int):
    """(mean paired Δ of variant - reference, CI low, CI high) in PSNR."""
    diffs = paired_differences(table, variant, reference)["diff"].to_numpy()
    if diffs.size == 0:
        return (math.nan, math.nan, math.nan)
    low, high = bootstrap_mean_ci(diffs, n_resamples, DEFAULT_CONFIDENCE, seed)
    return (float(diffs.mean()), low, high)


def _outcome(delta: float, low: float, high: float) -> str:
    """Whether a variant is significantly above, below, or tied with its reference."""
    if math.isnan(delta):
        return "missing"
    if not math.isnan(high) and high < 0:
        return "below"
    if not math.isnan(low) and low > 0:
        return "above"
    return "tie"


def _describe(variant: str, reference: str, delta: float, low: float, high: float) -> str:
    return f"{variant} − {reference}: {_signed(delta, PSNR_DIGITS + 1)} dB {_interval(low, high, PSNR_DIGITS + 1)}"


def _single_factor_variants(configs: pd.DataFrame, reference: str, free: set[str]) -> list[str]:
    """Variants that equal `reference` on every knob outside `free` and differ in at least one inside it
    (a variant equal on every knob is the reference model under another name, e.g. from another grid)."""
    ref = configs.loc[reference]

    def same(v, k):
        return _same(_none(configs.loc[v, k]), _none(ref[k]))

    return [
        v for v in configs.index
        if all(same(v, k) for k in KNOB_COLUMNS if k not in free)
        and not all(same(v, k) for k in KNOB_COLUMNS)
    ]


def _none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def check_paper_claims(table: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int = DEFAULT_BOOTSTRAP_SEED) -> list[ClaimCheck]:
    """Test the paper's ablation claims (Sec. 4.3) on one task and level of the table.

    Variants are recognised by their knobs, not their names: the HIN reference is `default_baseline`, the
    norm comparisons are variants that differ from it only in the norm (and so its default ratio), the
    placement comparisons only in hin_position_left/right and norm_in_decoder. A claim "reproduces" when
    every comparison it needs is significant in its direction (95% paired bootstrap interval excludes 0),
    "does not reproduce" when one is significant the other way, and is "inconclusive" otherwise.
    """
    table = table.drop_duplicates(["variant", "seed", "image"])
    configs = variant_configs(table)
    reference = default_baseline(table)
    configs_with_ratio = configs.assign(ratio=configs.apply(_effective_ratio, axis=1))
    if configs.loc[reference, "norm"] != "half_instance":
        return [ClaimCheck(claim, "not tested", "the table has no HIN variant") for claim in _CLAIMS]

    norm_variants = _single_factor_variants(configs, reference, {"norm", "norm_ratio"})
    by_norm: dict[str, str] = {}
    for variant in norm_variants:
        norm = configs.loc[variant, "norm"]
        ratio = configs_with_ratio.loc[variant, "ratio"]
        if norm == "half_instance" and math.isclose(ratio, 1.0):
            norm = "instance"  # half instance norm applied to every channel is instance norm
        if norm in ("batch", "layer", "instance", "none") and (norm == "none" or math.isclose(ratio, 1.0)):
            by_norm.setdefault(norm, variant)
    checks = []

    # 1. HIN beats BN, LN, IN and no normalization.
    comparisons = {norm: _comparison(table, variant, reference, n_resamples, seed) for norm, variant in by_norm.items()}
    checks.append(_verdict(
        _CLAIMS[0],
        [(by_norm[n], *comparisons[n]) for n in ("batch", "layer", "instance", "none") if n in by_norm],
        reference, want="below", needed=4,
        missing=[n for n in ("batch", "layer", "instance", "none") if n not in by_norm],
    ))

    # 2. BN hurts most: the batch-norm variant has the lowest PSNR among the norm variants.
    if "batch" in by_norm and len(by_norm) >= 2:
        means = seed_means(table[table["variant"].isin([reference, *by_norm.values()])]).groupby("variant")["psnr"].mean()
        worst = means.idxmin()
        others = {v: m for v, m in means.items() if v != by_norm["batch"]}
        bn_vs_next = min(others, key=others.get)
        delta, low, high = _comparison(table, by_norm["batch"], bn_vs_next, n_resamples, seed)
        listing = ", ".join(f"{v} {m:.{PSNR_DIGITS}f}" for v, m in means.sort_values().items())
        evidence = f"mean PSNR (dB): {listing}; {_describe(by_norm['batch'], bn_vs_next, delta, low, high)}"
        if worst != by_norm["batch"]:
            verdict = "does not reproduce" if _outcome(delta, low, high) == "above" else "inconclusive"
        else:
            verdict = "reproduces" if _outcome(delta, low, high) == "below" else "inconclusive"
        checks.append(ClaimCheck(_CLAIMS[1], verdict, evidence))
    else:
        checks.append(ClaimCheck(_CLAIMS[1], "not tested", "needs a batch-norm variant and another norm variant"))

    # 3. Full instance norm is worse than half.
    if "instance" in by_norm:
        checks.append(_verdict(_CLAIMS[2], [(by_norm["instance"], *comparisons["instance"])], reference,
                               want="below", needed=1, missing=[]))
    else:
        checks.append(ClaimCheck(_CLAIMS[2], "not tested", "needs an instance-norm variant (ratio 1.0)"))

    # 4. HIN in every encoder block and not in the decoder is the best placement.
    placement = _single_factor_variants(configs, reference, {"hin_position_left", "hin_position_right", "norm_in_decoder"})
    ref_config = configs.loc[reference]
    full_encoder = ref_config["hin_position_left"] == 0 and ref_config["hin_position_right"] == ref_config["depth"] - 1
    if placement and full_encoder and ref_config["norm_in_decoder"] is not True:
        checks.append(_verdict(
            _CLAIMS[3], [(v, *_comparison(table, v, reference, n_resamples, seed)) for v in placement],
            reference, want="below", needed=len(placement), missing=[],
        ))
    else:
        checks.append(ClaimCheck(_CLAIMS[3], "not tested",
                                 "needs HIN at every encoder level plus variants that only move HIN"))
    return checks


_CLAIMS = (
    "HIN beats batch, layer and instance normalization and no normalization",
    "Batch normalization hurts the most",
    "Full instance normalization is worse than half instance normalization",
    "HIN in every encoder block (and not in the decoder) is the best placement",
)


def _verdict(claim: str, comparisons, reference: str, want: str, needed: int, missing: list[str]) -> ClaimCheck:
    outcomes = [_outcome(delta, low, high) for _, delta, low, high in comparisons]
    evidence = "; ".join(_describe(v, reference, d, lo, hi) for v, d, lo, hi in comparisons)
    if missing:
        evidence += f" (no comparable variant for: {', '.join(missing)})"
    opposite = "above" if want == "below" else "below"
    if not comparisons:
        verdict = "not tested"
    elif opposite in outcomes:
        verdict = "does not reproduce"
    elif all(o == want for o in outcomes) and len(comparisons) >= needed:
        verdict = "reproduces"
    elif all(o == want for o in outcomes):
        verdict = "reproduces for the variants tested"
    else:
        verdict = "inconclusive"
    return ClaimCheck(claim, verdict, evidence)
