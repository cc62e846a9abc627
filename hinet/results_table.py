"""Statistics of the ablation table (`results/ablation.csv`): the one implementation behind both the app's
ablation explorer and `scripts/make_results_readme.py`, so the numbers a user sees and the numbers the
README publishes cannot drift apart. It also owns the table's column list (`ABLATION_COLUMNS`), which the
sweep that writes the table imports.

The table has one row per (training run, test-time protocol, test image). The *protocol* says how
normalization statistics were computed at test time (one of `hinet.inference.STATS_PROTOCOLS`): the same
trained weights score differently under each, so a score is only comparable with scores of the same
protocol. Every statistic here is therefore computed within one protocol; the functions that need one
raise `ResultsError` when handed rows of several, instead of silently averaging them. The one statistic
that pairs two protocols is `protocol_gain`: one run's scores of the same image under two protocols, the
same weights, so the difference is the protocol's alone (does tiled scoring still pay off?). Tables written
before the column existed were all evaluated on whole images and read as protocol "whole" (and an unknown
learning rate).

A *variant* is trained with several seeds; for each variant and protocol we report the mean and the sample
standard deviation over seeds of the image-averaged PSNR/SSIM, and its difference to a baseline variant
*paired* by (seed, image) within the protocol: two runs with the same seed saw the same initialisation
seed and batches, and two rows with the same image saw the same degraded input, so pairing removes most of
the image-to-image and seed-to-seed spread from the comparison.

The 95% interval of a paired difference is a *hierarchical* percentile bootstrap: resample the seeds with
replacement, then the images with replacement within each resampled seed, and take the mean of the paired
differences drawn. The seed is the unit that training replicates (all images of a run share its weights),
so resampling (seed, image) pairs as if independent would count one lucky seed once per image and give an
interval too narrow whenever the seeds disagree. Next to the interval we report each seed's image-mean
difference (the "per-seed Δ"), so a reader sees the disagreement itself. With a single seed there is no
seed to resample: the interval then only reflects the image spread, and the tables say so. The generator
seed is fixed, so reruns print the same interval.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from hinet.errors import ResultsError
from hinet.inference import STATS_PROTOCOLS
from hinet.metrics import default_protocol
from hinet.runs import LOG_FILE

# One cell of a config column: a knob value (str, number, bool) or missing (None; NaN for floats).
_Cell = str | float | None
PROTOCOL_MEANING = "how normalization statistics were computed at test time"
# Tables written before the protocol column were all evaluated on whole images; views open on it too.
DEFAULT_PROTOCOL = "whole"

# The columns of results/ablation.csv, in the order the sweep writes them.
ABLATION_COLUMNS = (
    "run",
    "ablation",
    "variant",
    "task",
    "level",
    "seed",
    "norm",
    "norm_ratio",
    "hin_position_left",
    "hin_position_right",
    "norm_in_decoder",
    "norm_affine",
    "wf",
    "depth",
    "steps",
    "lr",
    "train_patch",
    "train_batch",
    "train_seconds",
    "params",
    "macs",
    "latency_ms",
    "device",
    "train_device",
    "precision",
    "protocol",
    "image",
    "psnr",
    "ssim",
)
REQUIRED_COLUMNS = ABLATION_COLUMNS  # the former name, still imported by tests/test_sweep.py
# Columns added after tables were first written, and the value an older table implies for them.
UNRECORDED = "unrecorded"  # a training device or precision a run did not record
ADDED_COLUMNS = {
    "lr": math.nan,
    "train_patch": math.nan,
    "train_batch": math.nan,
    "protocol": DEFAULT_PROTOCOL,
    "train_device": UNRECORDED,
    "precision": UNRECORDED,
}
# The model/training knobs that define a variant; the "diff only" view compares these with the baseline.
KNOB_COLUMNS = (
    "norm",
    "norm_ratio",
    "hin_position_left",
    "hin_position_right",
    "norm_in_decoder",
    "norm_affine",
    "wf",
    "depth",
    "steps",
    "lr",
    "train_patch",
    "train_batch",
)
# Knobs the sweep chooses per variant (its learning-rate search trains each variant at its own best rate),
# so a comparison of two variants does not require them equal; the claim evidence states them when they differ.
TUNED_KNOBS = ("lr",)
# Knobs an older table did not record: a missing value there is unknown, not a setting, so it matches any.
RECORDED_LATER = ("train_patch", "train_batch")
NUMERIC_COLUMNS = (
    "seed",
    "norm_ratio",
    "hin_position_left",
    "hin_position_right",
    "wf",
    "depth",
    "steps",
    "lr",
    "train_patch",
    "train_batch",
    "train_seconds",
    "params",
    "macs",
    "latency_ms",
    "psnr",
    "ssim",
)
BOOL_COLUMNS = ("norm_in_decoder", "norm_affine")
COST_COLUMNS = ("params", "macs", "latency_ms", "train_seconds")
LOG_COLUMNS = ("step", "loss", "lr", "val_psnr", "val_ssim", "wall")
# One row per (run, protocol, image): a second row with these values is a duplicate.
ROW_KEY = ("ablation", "task", "level", "variant", "seed", "protocol", "image")

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
    """Check the columns and types of an ablation table; returns a copy with numeric and boolean columns
    parsed, the columns in `ABLATION_COLUMNS` order (extra columns after them), and the `ADDED_COLUMNS` an
    older table lacks filled with the value that table implies."""
    missing = [column for column in ABLATION_COLUMNS if column not in table.columns and column not in ADDED_COLUMNS]
    if missing:
        raise ResultsError(
            f"{source} lacks the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
            f"expected columns: {', '.join(ABLATION_COLUMNS)}"
        )
    if table.empty:
        raise ResultsError(f"{source} has no rows; run the ablation sweep to fill it")
    table = table.copy()
    for column, implied in ADDED_COLUMNS.items():
        if column not in table.columns:
            table[column] = implied
    table = table[[*ABLATION_COLUMNS, *(c for c in table.columns if c not in ABLATION_COLUMNS)]]
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
    for column in ("train_device", "precision"):
        table[column] = table[column].where(table[column].notna() & (table[column] != ""), UNRECORDED).astype(str)
    table["seed"] = table["seed"].astype(int)
    # an empty cell is a row written before its run recorded a protocol: whole-image statistics
    table["protocol"] = table["protocol"].where(table["protocol"].notna(), DEFAULT_PROTOCOL).astype(str).str.strip()
    unknown = ~table["protocol"].isin(STATS_PROTOCOLS)
    if unknown.any():
        row = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ResultsError(
            f"{source}: protocol {table['protocol'].iloc[row]!r} in data row {row + 1} is not one of "
            f"{', '.join(STATS_PROTOCOLS)} ({PROTOCOL_MEANING}, named by hinet.inference.STATS_PROTOCOLS)"
        )
    duplicated = table.duplicated(list(ROW_KEY))
    if duplicated.any():
        row = table[duplicated].iloc[0]
        raise ResultsError(
            f"{source} has two rows for variant {row['variant']!r}, seed {row['seed']}, image {row['image']!r}, "
            f"protocol {row['protocol']!r} in ablation {row['ablation']!r}; each (run, protocol, image) must "
            f"appear once"
        )
    return table


def _parse_bool(value: object) -> bool | None:
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


def read_run_logs(runs_dir: str | Path, runs: Iterable[str]) -> pd.DataFrame:
    """`log.jsonl` of each named run under `runs_dir`, concatenated with a `run` column; absent logs are skipped."""
    frames = []
    for run in runs:
        path = Path(runs_dir) / str(run) / LOG_FILE
        if path.is_file():
            frames.append(read_run_log(path).assign(run=str(run)))
    if not frames:
        return pd.DataFrame(columns=["run", *LOG_COLUMNS])
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------------------------------
# Selecting


def select(
    table: pd.DataFrame,
    task: str | None = None,
    level: str | None = None,
    ablation: str | None = None,
    variants: Iterable[str] | None = None,
    seeds: Iterable[int] | None = None,
    protocol: str | None = None,
) -> pd.DataFrame:
    """Rows matching every filter that is given (None = no filter; lists select any of their values)."""
    mask = pd.Series(True, index=table.index)
    for column, wanted in (("task", task), ("level", level), ("ablation", ablation), ("protocol", protocol)):
        if wanted is not None:
            mask &= table[column].astype(str) == str(wanted)
    if variants is not None:
        mask &= table["variant"].isin([str(v) for v in variants])
    if seeds is not None:
        mask &= table["seed"].isin([int(s) for s in seeds])
    return table[mask]


def protocols(table: pd.DataFrame) -> list[str]:
    """The protocols present, in `STATS_PROTOCOLS` order (a frame without the column holds "whole" rows)."""
    if "protocol" not in table.columns:
        return [DEFAULT_PROTOCOL] if len(table) else []
    present = set(table["protocol"].astype(str))
    return [p for p in STATS_PROTOCOLS if p in present] + sorted(present - set(STATS_PROTOCOLS))


def preferred_protocol(table: pd.DataFrame) -> str | None:
    """The protocol a view opens on: "whole" when present, else the first present; None for no rows."""
    present = protocols(table)
    if DEFAULT_PROTOCOL in present:
        return DEFAULT_PROTOCOL
    return present[0] if present else None


def single_protocol(table: pd.DataFrame, needed_by: str) -> str | None:
    """The one protocol of `table` (None when it has no rows); `ResultsError` when it has several, since
    scores under different normalization statistics must never be averaged or paired together."""
    present = protocols(table)
    if len(present) > 1:
        raise ResultsError(
            f"{needed_by} needs rows of one test-time protocol ({PROTOCOL_MEANING}), but got "
            f"{', '.join(present)}; select one first, e.g. select(table, protocol={present[0]!r})"
        )
    return present[0] if present else None


def variant_order(table: pd.DataFrame) -> list[str]:
    """Variants in the order they first appear (the sweep's order, which groups related variants)."""
    return list(dict.fromkeys(table["variant"]))


def variant_configs(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variant (index) with its knob values (`KNOB_COLUMNS`), in `variant_order`."""
    configs = table.drop_duplicates("variant").set_index("variant")[list(KNOB_COLUMNS)]
    return configs.loc[variant_order(table)]


def _effective_ratio(row: pd.Series) -> float:
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
        # a tie (HIN on two training patch sizes) goes to the smaller patch, the grids' reference setup
        - pd.to_numeric(hin["train_patch"], errors="coerce").fillna(0) / 1e6
    )
    return str(hin.loc[score.idxmax(), "variant"])


# ----------------------------------------------------------------------------------------------------
# Statistics (each of one protocol)


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Image-averaged PSNR and SSIM of each (variant, seed): the per-run score the seed statistics use."""
    single_protocol(table, "seed_means")
    means = table.groupby(["variant", "seed"], sort=False)[["psnr", "ssim"]].mean().reset_index()
    return means


def paired_differences(table: pd.DataFrame, variant: str, baseline: str, metric: str = "psnr") -> pd.DataFrame:
    """`metric(variant) - metric(baseline)` for every (seed, image) both have; columns seed, image, diff."""
    single_protocol(table, "paired_differences")
    keys = ["seed", "image"]
    left = table[table["variant"] == variant][keys + [metric]]
    right = table[table["variant"] == baseline][keys + [metric]]
    merged = left.merge(right, on=keys, suffixes=("_variant", "_baseline"))
    merged["diff"] = merged[f"{metric}_variant"] - merged[f"{metric}_baseline"]
    return merged[keys + ["diff"]]


def seed_deltas(diffs: pd.DataFrame) -> dict[int, float]:
    """Each seed's image-mean paired difference, by increasing seed, from `paired_differences` rows."""
    means = diffs.groupby("seed", sort=True)["diff"].mean()
    return {int(seed): float(value) for seed, value in means.items()}


def hierarchical_bootstrap_ci(
    diffs: pd.DataFrame,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile interval of the mean paired difference under a two-level bootstrap of `diffs` (columns
    seed and diff): seeds drawn with replacement, then as many images as that seed has, drawn with
    replacement among its own. (nan, nan) with fewer than two finite differences."""
    diffs = diffs[np.isfinite(diffs["diff"].to_numpy(dtype=np.float64))]
    if len(diffs) < 2:
        return (math.nan, math.nan)
    groups = [group.to_numpy(dtype=np.float64) for _, group in diffs.groupby("seed", sort=True)["diff"]]
    counts = np.array([group.size for group in groups])
    width = int(counts.max())
    padded = np.zeros((len(groups), width))
    for index, group in enumerate(groups):
        padded[index, : group.size] = group
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(groups), size=(n_resamples, len(groups)))  # seeds, with replacement
    sizes = counts[chosen][..., None]  # each drawn seed keeps its own number of images
    images = rng.integers(0, sizes, size=(n_resamples, len(groups), width))  # images within the drawn seed
    used = np.arange(width) < sizes  # a seed with fewer images than the widest draws fewer
    drawn = np.where(used, padded[chosen[..., None], images], 0.0)
    means = drawn.sum(axis=(1, 2)) / used.sum(axis=(1, 2))
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return (float(low), float(high))


@dataclass(frozen=True)
class PairedDelta:
    """A variant's paired difference to a reference within one protocol."""

    mean: float  # mean over the (seed, image) pairs both have
    low: float  # hierarchical bootstrap interval of that mean
    high: float
    per_seed: dict[int, float] = field(default_factory=dict)  # each seed's image-mean difference
    n_pairs: int = 0

    @property
    def n_seeds(self) -> int:
        return len(self.per_seed)


def paired_delta(
    table: pd.DataFrame,
    variant: str,
    reference: str,
    metric: str = "psnr",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> PairedDelta:
    """`metric(variant) - metric(reference)` paired by (seed, image): mean, interval and per-seed values.

    The reference against itself is exactly 0 with a zero-width interval (no resampling needed).
    """
    diffs = paired_differences(table, variant, reference, metric)
    return delta_of(diffs, n_resamples, confidence, seed, exact=variant == reference)


def delta_of(
    diffs: pd.DataFrame,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    exact: bool = False,
) -> PairedDelta:
    """The `PairedDelta` of paired differences (columns seed, image, diff): mean, hierarchical interval,
    per-seed values; `exact` for a difference known to be 0 (a variant against itself: no resampling)."""
    if diffs.empty:
        return PairedDelta(math.nan, math.nan, math.nan)
    low, high = (0.0, 0.0) if exact else hierarchical_bootstrap_ci(diffs, n_resamples, confidence, seed)
    return PairedDelta(float(diffs["diff"].mean()), low, high, seed_deltas(diffs), int(len(diffs)))


def protocol_gain_differences(
    table: pd.DataFrame, variant: str, protocol: str, reference_protocol: str = DEFAULT_PROTOCOL, metric: str = "psnr"
) -> pd.DataFrame:
    """`metric` of `variant` under `protocol` minus under `reference_protocol` for every (seed, image)
    scored under both; columns seed, image, diff. The same weights on the same degraded image, so the
    difference is what the test-time statistics change. Rows of one task and level only."""
    if len(table[["task", "level"]].drop_duplicates()) > 1:
        raise ResultsError("a protocol's gain is computed on rows of one task and level; select one first")
    keys = ["seed", "image"]
    rows = table[table["variant"] == variant].drop_duplicates(["seed", "protocol", "image"])  # shared runs once
    under = rows[rows["protocol"] == protocol][keys + [metric]]
    reference = rows[rows["protocol"] == reference_protocol][keys + [metric]]
    merged = under.merge(reference, on=keys, suffixes=("_protocol", "_reference"))
    merged["diff"] = merged[f"{metric}_protocol"] - merged[f"{metric}_reference"]
    return merged[keys + ["diff"]]


def protocol_gain(
    table: pd.DataFrame,
    variant: str,
    protocol: str,
    reference_protocol: str = DEFAULT_PROTOCOL,
    metric: str = "psnr",
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> PairedDelta:
    """The gain of scoring `variant` under `protocol` instead of `reference_protocol`
    (`protocol_gain_differences`) with the interval of `paired_delta`; NaN when it was not scored under both."""
    diffs = protocol_gain_differences(table, variant, protocol, reference_protocol, metric)
    return delta_of(diffs, n_resamples, confidence, seed, exact=protocol == reference_protocol)


def summarize(
    table: pd.DataFrame,
    baseline: str,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """One row per variant of one protocol: seed statistics, paired differences to `baseline` with
    hierarchical bootstrap intervals and per-seed values, and costs.

    Columns: variant, protocol, n_seeds, n_images, psnr_mean, psnr_std, ssim_mean, ssim_std, delta_psnr,
    delta_psnr_low, delta_psnr_high, delta_psnr_per_seed, delta_ssim, delta_ssim_low, delta_ssim_high,
    delta_ssim_per_seed, n_pairs, n_paired_seeds, params, macs, latency_ms, train_seconds. Standard
    deviations are over seeds (ddof 1; NaN with one seed); a `*_per_seed` cell is a {seed: Δ} dict.
    """
    protocol = single_protocol(table, "summarize")
    if baseline not in set(table["variant"]):
        raise ResultsError(
            f"baseline {baseline!r} is not among the selected variants; pick one of {', '.join(variant_order(table))}"
        )
    per_seed = seed_means(table)
    per_run_costs = table.drop_duplicates(["variant", "seed"]).groupby("variant")[list(COST_COLUMNS)].mean()
    rows = []
    order = variant_order(table)
    for variant in [baseline] + [v for v in order if v != baseline]:  # the reference row first
        seeds = per_seed[per_seed["variant"] == variant]
        row: dict[str, object] = {
            "variant": variant,
            "protocol": protocol,
            "n_seeds": int(len(seeds)),
            "n_images": int(table.loc[table["variant"] == variant, "image"].nunique()),
        }
        for metric in ("psnr", "ssim"):
            row[f"{metric}_mean"] = float(seeds[metric].mean())
            row[f"{metric}_std"] = float(seeds[metric].std(ddof=1)) if len(seeds) > 1 else math.nan
        for metric in ("psnr", "ssim"):
            delta = paired_delta(table, variant, baseline, metric, n_resamples, confidence, seed)
            row[f"delta_{metric}"], row[f"delta_{metric}_low"], row[f"delta_{metric}_high"] = (
                delta.mean,
                delta.low,
                delta.high,
            )
            row[f"delta_{metric}_per_seed"] = delta.per_seed
            row["n_pairs"], row["n_paired_seeds"] = delta.n_pairs, delta.n_seeds
        for column in COST_COLUMNS:
            row[column] = float(per_run_costs.loc[variant, column])
        rows.append(row)
    return pd.DataFrame(rows)


def per_image_delta(table: pd.DataFrame, baseline: str, metric: str = "psnr") -> pd.DataFrame:
    """Paired difference to the baseline averaged over seeds: rows are images, columns are the other variants."""
    single_protocol(table, "per_image_delta")
    columns = {}
    for variant in variant_order(table):
        if variant == baseline:
            continue
        diffs = paired_differences(table, variant, baseline, metric)
        columns[variant] = diffs.groupby("image")["diff"].mean()
    frame = pd.DataFrame(columns)
    frame.index.name = "image"
    return frame


def means_by_protocol(table: pd.DataFrame, metric: str = "psnr") -> pd.DataFrame:
    """Mean over seeds of the image-averaged `metric`, computed within each protocol: rows are variants
    (`variant_order`), columns the protocols present (`protocols`). Shows how a variant's score moves when
    only the test-time statistics change; a variant listed under several ablations counts once (call it
    per ablation when two ablations reuse a name for different runs). Only the (variant, seed) pairs scored
    under every protocol present count, so a seed that lacks a protocol does not pass for a protocol effect."""
    rows = table.drop_duplicates(["variant", "seed", "protocol", "image"])
    present = protocols(rows)
    complete = rows.groupby(["variant", "seed"])["protocol"].nunique()
    complete = complete[complete == len(present)].index
    rows = rows.set_index(["variant", "seed"]).loc[lambda f: f.index.isin(complete)].reset_index()
    columns = {}
    for protocol in protocols(rows):
        means = seed_means(select(rows, protocol=protocol)).groupby("variant", sort=False)[metric].mean()
        columns[protocol] = means
    frame = pd.DataFrame(columns).reindex(variant_order(rows))
    frame.index.name = "variant"
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
                "" if (variant != baseline and not differs.loc[variant, column]) else _format_knob(value, column)
                for variant, value in shown[column].items()
            ]
        configs = shown
    else:
        configs = configs.apply(lambda column: column.map(lambda value: _format_knob(value, column.name)))
    configs.insert(0, "role", ["baseline" if v == baseline else "" for v in configs.index])
    return configs.reset_index()


def _same(a: _Cell, b: _Cell) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b))
        except (TypeError, ValueError):
            return False
    return a == b


def _format_knob(value: _Cell, column: str | None = None) -> str:
    if value is None:
        return UNRECORDED if column in RECORDED_LATER else "default"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def pareto_front(cost: npt.ArrayLike, quality: npt.ArrayLike) -> np.ndarray:
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

    def rounded(column: str, digits: int) -> pd.Series:
        return summary[column].round(digits)

    is_baseline = summary["variant"] == baseline
    seeds = _paired_seeds(summary)
    return pd.DataFrame(
        {
            "variant": summary["variant"] + np.where(is_baseline, " (baseline)", ""),
            "seeds": summary["n_seeds"],
            "PSNR (dB)": rounded("psnr_mean", PSNR_DIGITS),
            "PSNR std": rounded("psnr_std", PSNR_DIGITS),
            "SSIM": rounded("ssim_mean", SSIM_DIGITS),
            "SSIM std": rounded("ssim_std", SSIM_DIGITS),
            "Δ PSNR (dB)": rounded("delta_psnr", PSNR_DIGITS + 1),
            "Δ 95% CI": [
                "reference"
                if base
                else _interval(row["delta_psnr_low"], row["delta_psnr_high"], PSNR_DIGITS + 1, row["n_paired_seeds"])
                for base, (_, row) in zip(is_baseline, summary.iterrows())
            ],
            f"Δ per seed ({_seed_label(seeds)})": [
                "reference" if base else format_seed_deltas(per_seed, seeds)
                for base, per_seed in zip(is_baseline, summary["delta_psnr_per_seed"])
            ],
            "Δ SSIM": rounded("delta_ssim", SSIM_DIGITS),
            "params": summary["params"].round(0).astype("Int64"),
            "MACs (G)": (summary["macs"] / 1e9).round(3),
            "latency (ms)": rounded("latency_ms", 1),
            "train time (s)": rounded("train_seconds", 0),
        }
    )


def markdown_summary(summary: pd.DataFrame, baseline: str) -> str:
    """The summary as a Markdown table with `mean ± std` cells (the README's and the app's export format)."""
    seeds = _paired_seeds(summary)
    header = [
        "variant",
        "seeds",
        "PSNR (dB)",
        "SSIM",
        f"Δ PSNR vs {baseline} [95% CI]",
        f"Δ PSNR per seed ({_seed_label(seeds)})",
        "Δ SSIM",
        "params",
        "MACs (G)",
        "latency (ms)",
        "train time (s)",
    ]
    rows = []
    for _, row in summary.iterrows():
        name = f"**{row['variant']}** (baseline)" if row["variant"] == baseline else row["variant"]
        if row["variant"] == baseline:
            delta, per_seed = "0 (reference)", "reference"
        else:
            interval = _interval(row["delta_psnr_low"], row["delta_psnr_high"], PSNR_DIGITS + 1, row["n_paired_seeds"])
            delta = f"{_signed(row['delta_psnr'], PSNR_DIGITS + 1)} {interval}"
            per_seed = format_seed_deltas(row["delta_psnr_per_seed"], seeds)
        rows.append(
            [
                name,
                str(row["n_seeds"]),
                _mean_std(row["psnr_mean"], row["psnr_std"], PSNR_DIGITS),
                _mean_std(row["ssim_mean"], row["ssim_std"], SSIM_DIGITS),
                delta,
                per_seed,
                "0" if row["variant"] == baseline else _signed(row["delta_ssim"], SSIM_DIGITS),
                f"{row['params']:,.0f}",
                f"{row['macs'] / 1e9:.3f}",
                f"{row['latency_ms']:.1f}",
                f"{row['train_seconds']:.0f}",
            ]
        )
    return to_markdown(header, rows)


def format_seed_deltas(
    per_seed: dict[int, float], seeds: Iterable[int] | None = None, digits: int = PSNR_DIGITS
) -> str:
    """ "+0.41 / +0.12 / -0.05": the per-seed Δ in the order of `seeds` (default: its own), "n/a" for a seed
    without pairs, so cells of one column line up seed by seed."""
    seeds = sorted(per_seed) if seeds is None else list(seeds)
    if not seeds:
        return "n/a"
    return " / ".join(_signed(per_seed.get(seed, math.nan), digits) for seed in seeds)


def _paired_seeds(summary: pd.DataFrame) -> list[int]:
    """Every seed with paired differences in the summary, in increasing order (the per-seed columns' order)."""
    return sorted({seed for per_seed in summary["delta_psnr_per_seed"] for seed in per_seed})


def _seed_label(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) != 1 else ''} {' / '.join(map(str, seeds))}" if seeds else "no pairs"


def to_markdown(header: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells are escaped)."""

    def cell(value: object) -> str:
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


def _interval(low: float, high: float, digits: int, n_seeds: int | None = None) -> str:
    if math.isnan(low) or math.isnan(high):
        return "n/a (needs 2+ pairs)"
    text = f"[{low:+.{digits}f}, {high:+.{digits}f}]"
    if n_seeds == 1:
        text += " (1 seed: image spread only)"  # no seed to resample: the interval ignores seed-to-seed spread
    return text


def protocol_text(
    table: pd.DataFrame,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> str:
    """How the numbers of `table` were measured and summarised, stated from the table itself."""
    images = sorted(set(table["image"]))
    seeds = sorted(set(table["seed"]))
    tasks = ", ".join(f"{t} at level {lv}" for t, lv in table[["task", "level"]].drop_duplicates().values)
    steps = sorted({int(s) for s in table["steps"].dropna()})
    rates = sorted({float(r) for r in table["lr"].dropna()}) if "lr" in table.columns else []
    at_rate = f" at learning rate {', '.join(f'{r:g}' for r in rates)}" if rates else ""
    devices = sorted(set(table["device"]))
    setups = "; ".join(f"{setup} ({count} runs)" for setup, count in training_setups(table).items())
    metric = " ".join(f"{task}: {_metric_protocol(task)}" for task in dict.fromkeys(table["task"]))
    present = protocols(table)
    if len(present) == 1:
        statistics = f"`{present[0]}` ({PROTOCOL_MEANING})."
    else:
        statistics = (
            f"{', '.join(f'`{p}`' for p in present)} ({PROTOCOL_MEANING}); every statistic is "
            f"computed within one protocol, rows of two protocols are never pooled, and only a protocol's gain "
            f"pairs them (one run, one image, two protocols)."
        )
    return "\n".join(
        [
            f"- **Degradation:** {tasks} (`hinet.data.degrade`, the same function training used), applied to the "
            f"clean test images with a fixed generator.",
            f"- **Test images ({len(images)}):** {', '.join(images)}; never used for training or validation.",
            f"- **Normalization statistics at test time:** {statistics}",
            f"- **Metrics:** {metric} PSNR shown with {PSNR_DIGITS} decimals, SSIM with {SSIM_DIGITS}.",
            f"- **Seeds:** {', '.join(map(str, seeds))}; each variant trained once per seed for "
            f"{', '.join(map(str, steps))} steps{at_rate}. Trained on: {setups}; scored on {', '.join(devices)}.",
            f"- **Mean ± std** are over seeds of the image-averaged score (sample std, ddof 1). **Δ** is the mean "
            f"difference to the baseline paired by (seed, image); its interval is a {confidence:.0%} percentile "
            f"hierarchical bootstrap of that mean (seeds resampled with replacement, then images with replacement "
            f"within each seed; {n_resamples} resamples, generator seed {seed}), so it widens when seeds disagree. "
            f"**Δ per seed** is each seed's image-mean difference. With one seed the interval only reflects the "
            f"image spread.",
            "- **Costs:** parameters; MACs of one 256x256 forward pass (FlopCounterMode / 2); latency of one "
            "forward pass on the machine that scored the run; train time is the wall-clock time of the run on "
            "the machine that trained it, shared with other work."
            + (
                " These runs were trained or scored on more than one machine, so their latency and train-time "
                "columns compare machines as much as variants."
                if len(devices) > 1 or len(training_setups(table)) > 1
                else ""
            ),
        ]
    )


def _setup(train_device: str, precision: str) -> str:
    machine = "machine unrecorded" if train_device == UNRECORDED else train_device.removeprefix("cpu: ")
    return f"{machine}, {'precision unrecorded' if precision == UNRECORDED else precision}"


def training_setups(table: pd.DataFrame) -> dict[str, int]:
    """How many runs trained on each (machine, precision), most runs first."""
    runs = table.drop_duplicates("run")
    counts = runs.groupby(["train_device", "precision"]).size().sort_values(ascending=False, kind="stable")
    return {_setup(device, precision): int(n) for (device, precision), n in counts.items()}


def mixed_setup_notes(table: pd.DataFrame) -> list[str]:
    """One sentence per (ablation, task, level) whose runs trained on more than one (machine, precision):
    which variants trained how, so that a reader knows a Δ between them also carries that difference."""
    notes = []
    runs = table.drop_duplicates("run")
    for (ablation, task, level), group in runs.groupby(["ablation", "task", "level"], sort=True):
        by_setup = group.groupby(["train_device", "precision"], sort=True)
        if by_setup.ngroups < 2:
            continue
        parts = []
        for (device, precision), members in by_setup:
            variants = ", ".join(dict.fromkeys(members.sort_values("seed")["variant"]))
            parts.append(f"{variants} ({len(members)} runs) on {_setup(device, precision)}")
        notes.append(
            f"{ablation}, {task} {level}: {'; '.join(parts)}. A Δ between runs of two of these setups carries "
            f"the machine and precision difference too."
        )
    return notes


def setup_lines(table: pd.DataFrame) -> list[str]:
    """Markdown list items the ladder shows above its sentences: where and how its runs trained, and every
    cell whose runs mix machines or precisions (`mixed_setup_notes`)."""
    setups = "; ".join(f"{setup} ({n} runs)" for setup, n in training_setups(table).items())
    lines = [f"- **Trained on:** {setups} (each run's `sweep.json`)."]
    return lines + [f"- **Mixed setups:** {note}" for note in mixed_setup_notes(table)]


def _metric_protocol(task: str) -> str:
    return f"PSNR/SSIM on {default_protocol(task).describe()} (`hinet.metrics`)."


# ----------------------------------------------------------------------------------------------------
# The paper's claims, checked against the table


@dataclass(frozen=True)
class ClaimCheck:
    claim: str  # the paper's statement
    verdict: str  # "reproduces", "does not reproduce", "inconclusive", INCONCLUSIVE_ONE_SEED or "not tested"
    evidence: str  # the numbers behind the verdict
    protocol: str = DEFAULT_PROTOCOL  # the test-time protocol whose rows the verdict comes from


def _comparison(table: pd.DataFrame, variant: str, reference: str, n_resamples: int, seed: int) -> PairedDelta:
    """The paired PSNR difference variant - reference with its hierarchical interval."""
    return paired_delta(table, variant, reference, "psnr", n_resamples, DEFAULT_CONFIDENCE, seed)


MIN_SEEDS_TO_CONCLUDE = 2  # with one training seed an interval holds image spread only, not seed-to-seed spread
ONE_SEED = "one seed"  # the outcome of a comparison that cannot be significant: fewer than 2 paired seeds
INCONCLUSIVE_ONE_SEED = "inconclusive (1 seed)"


def significance(low: float, high: float, n_seeds: int) -> str:
    """ "above" / "below" when the 95% interval of a paired Δ excludes 0 on that side, ONE_SEED when fewer
    than `MIN_SEEDS_TO_CONCLUDE` training seeds are paired (a model trained once says nothing of how much
    another seed would move it), "tie" otherwise. Every significance word on the results pages comes from it."""
    if n_seeds < MIN_SEEDS_TO_CONCLUDE:
        return ONE_SEED
    if not math.isnan(high) and high < 0:
        return "below"
    if not math.isnan(low) and low > 0:
        return "above"
    return "tie"


def _outcome(delta: PairedDelta) -> str:
    """Whether a variant is significantly above, below, or tied with its reference (see `significance`)."""
    if math.isnan(delta.mean):
        return "missing"
    return significance(delta.low, delta.high, delta.n_seeds)


def _describe(variant: str, reference: str, delta: PairedDelta, configs: pd.DataFrame) -> str:
    text = (
        f"{variant} − {reference}: {_signed(delta.mean, PSNR_DIGITS + 1)} dB "
        f"{_interval(delta.low, delta.high, PSNR_DIGITS + 1, delta.n_seeds)}"
    )
    if delta.n_seeds > 1:
        text += f", per seed {format_seed_deltas(delta.per_seed)}"
    tuned = [
        f"{knob} {_format_knob(_none(configs.loc[variant, knob]))} vs {_format_knob(_none(configs.loc[reference, knob]))}"
        for knob in TUNED_KNOBS
        if not _same(_none(configs.loc[variant, knob]), _none(configs.loc[reference, knob]))
    ]
    if tuned:
        text += f" ({'; '.join(tuned)})"
    return text


def _single_factor_variants(configs: pd.DataFrame, reference: str, free: set[str]) -> list[str]:
    """Variants that equal `reference` on every knob outside `free` (`TUNED_KNOBS` aside) and differ in at
    least one inside it (a variant equal on all of them is the reference model under another name, e.g.
    from another grid, even when its own learning-rate search chose another rate)."""
    ref = configs.loc[reference]

    def same(v: str, k: str) -> bool:
        a, b = _none(configs.loc[v, k]), _none(ref[k])
        return (k in RECORDED_LATER and (a is None or b is None)) or _same(a, b)

    return [
        v
        for v in configs.index
        if all(same(v, k) for k in KNOB_COLUMNS if k not in free and k not in TUNED_KNOBS)
        and not all(same(v, k) for k in free)
    ]


def _none(value: _Cell) -> _Cell:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


_CLAIMS = (
    "HIN beats batch, layer and instance normalization and no normalization",
    "Batch normalization hurts the most",
    "Full instance normalization is worse than half instance normalization",
    "HIN in every encoder block (and not in the decoder) is the best placement",
)


def check_paper_claims(
    table: pd.DataFrame,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    protocol: str | None = None,
) -> list[ClaimCheck]:
    """Test the paper's ablation claims (Sec. 4.3) on one task, level and protocol of the table.

    `protocol` picks one of the table's protocols; without it the table must hold a single one
    (`claims_by_protocol` checks each). Variants are recognised by their knobs, not their names: the HIN
    reference is `default_baseline`, the norm comparisons are variants that differ from it only in the norm
    (and so its default ratio), the placement comparisons only in hin_position_left/right and
    norm_in_decoder; the learning rate, which the sweep tunes per variant (`TUNED_KNOBS`), may differ and
    the evidence then names both rates. A claim "reproduces" when every comparison it needs is significant in its direction
    (the 95% hierarchical bootstrap interval of the paired Δ excludes 0), "does not reproduce" when one is
    significant the other way, and is "inconclusive" otherwise ("inconclusive (1 seed)" when a comparison
    it needs has a single training seed: see `significance`).
    """
    if protocol is not None:
        table = select(table, protocol=protocol)
        if table.empty:
            raise ResultsError(f"the table has no rows for protocol {protocol!r}")
    found = single_protocol(table, "check_paper_claims")  # None for an empty table: nothing is tested
    checks = _check_claims(table, n_resamples, seed)
    return checks if found is None else [replace(check, protocol=found) for check in checks]


def claims_by_protocol(
    table: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED
) -> dict[str, list[ClaimCheck]]:
    """`check_paper_claims` for each protocol of the table, in `protocols` order."""
    return {protocol: check_paper_claims(table, n_resamples, seed, protocol) for protocol in protocols(table)}


def _check_claims(table: pd.DataFrame, n_resamples: int, seed: int) -> list[ClaimCheck]:
    """The four checks on rows of one protocol."""
    table = table.drop_duplicates(["variant", "seed", "image"])  # a baseline shared by two ablations counts once
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
    checks.append(
        _verdict(
            _CLAIMS[0],
            [(by_norm[n], comparisons[n]) for n in ("batch", "layer", "instance", "none") if n in by_norm],
            reference,
            configs,
            want="below",
            needed=4,
            missing=[n for n in ("batch", "layer", "instance", "none") if n not in by_norm],
        )
    )

    # 2. BN hurts most: the batch-norm variant has the lowest PSNR among the norm variants.
    if "batch" in by_norm and len(by_norm) >= 2:
        means = (
            seed_means(table[table["variant"].isin([reference, *by_norm.values()])]).groupby("variant")["psnr"].mean()
        )
        worst = means.idxmin()
        others = {v: m for v, m in means.items() if v != by_norm["batch"]}
        bn_vs_next = min(others, key=lambda v: others[v])
        delta = _comparison(table, by_norm["batch"], bn_vs_next, n_resamples, seed)
        listing = ", ".join(f"{v} {m:.{PSNR_DIGITS}f}" for v, m in means.sort_values().items())
        evidence = f"mean PSNR (dB): {listing}; {_describe(by_norm['batch'], bn_vs_next, delta, configs)}"
        outcome = _outcome(delta)
        undecided = INCONCLUSIVE_ONE_SEED if outcome == ONE_SEED else "inconclusive"
        if worst != by_norm["batch"]:
            verdict = "does not reproduce" if outcome == "above" else undecided
        else:
            verdict = "reproduces" if outcome == "below" else undecided
        checks.append(ClaimCheck(_CLAIMS[1], verdict, evidence))
    else:
        checks.append(ClaimCheck(_CLAIMS[1], "not tested", "needs a batch-norm variant and another norm variant"))

    # 3. Full instance norm is worse than half.
    if "instance" in by_norm:
        checks.append(
            _verdict(
                _CLAIMS[2],
                [(by_norm["instance"], comparisons["instance"])],
                reference,
                configs,
                want="below",
                needed=1,
                missing=[],
            )
        )
    else:
        checks.append(ClaimCheck(_CLAIMS[2], "not tested", "needs an instance-norm variant (ratio 1.0)"))

    # 4. HIN in every encoder block and not in the decoder is the best placement.
    placement = _single_factor_variants(
        configs, reference, {"hin_position_left", "hin_position_right", "norm_in_decoder"}
    )
    ref_config = configs.loc[reference]
    full_encoder = ref_config["hin_position_left"] == 0 and ref_config["hin_position_right"] == ref_config["depth"] - 1
    if placement and full_encoder and ref_config["norm_in_decoder"] is not True:
        checks.append(
            _verdict(
                _CLAIMS[3],
                [(v, _comparison(table, v, reference, n_resamples, seed)) for v in placement],
                reference,
                configs,
                want="below",
                needed=len(placement),
                missing=[],
            )
        )
    else:
        checks.append(
            ClaimCheck(_CLAIMS[3], "not tested", "needs HIN at every encoder level plus variants that only move HIN")
        )
    return checks


def _verdict(
    claim: str,
    comparisons: list[tuple[str, PairedDelta]],
    reference: str,
    configs: pd.DataFrame,
    want: str,
    needed: int,
    missing: list[str],
) -> ClaimCheck:
    outcomes = [_outcome(delta) for _, delta in comparisons]
    evidence = "; ".join(_describe(variant, reference, delta, configs) for variant, delta in comparisons)
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
    elif ONE_SEED in outcomes and all(o in (want, ONE_SEED) for o in outcomes):
        verdict = INCONCLUSIVE_ONE_SEED  # only the single-seed comparisons stand between it and a verdict
    else:
        verdict = "inconclusive"
    return ClaimCheck(claim, verdict, evidence)


# ----------------------------------------------------------------------------------------------------
# Knob separation: HIN differs from BN, LN and IN in two knobs, the norm type and the normalized fraction

NORM_FAMILY = {"half_instance": "instance", "instance": "instance", "batch": "batch", "layer": "layer"}
HALF_OR_FULL = "half or full?"  # the same norm type at a fraction below 1 vs on every channel
WHICH_NORM = "which norm, at the same fraction?"  # another norm type than instance at HIN's fraction vs HIN


@dataclass(frozen=True)
class KnobComparison:
    question: str  # HALF_OR_FULL or WHICH_NORM
    variant: str
    reference: str
    delta: PairedDelta  # variant − reference, paired by (seed, image) within one protocol

    @property
    def outcome(self) -> str:
        return _outcome(self.delta)


def knob_separation(
    table: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED
) -> list[KnobComparison]:
    """Each of the two knobs varied alone, on rows of one protocol, among the HIN baseline and the variants
    that differ from it only in the norm (`_single_factor_variants`): HALF_OR_FULL compares every variant
    normalizing a fraction below 1 with the variant of its norm type on every channel (hin − instance,
    half_batch − batch, hin_r0.25 − instance, ...); WHICH_NORM compares every other norm type at HIN's
    fraction with HIN (half_batch − hin, half_layer − hin)."""
    single_protocol(table, "knob_separation")
    table = table.drop_duplicates(["variant", "seed", "image"])
    configs = variant_configs(table)
    reference = default_baseline(table)
    if configs.loc[reference, "norm"] != "half_instance":
        return []
    candidates = [reference, *_single_factor_variants(configs, reference, {"norm", "norm_ratio"})]
    kinds: dict[tuple[str, float], str] = {}
    for variant in candidates:
        family = NORM_FAMILY.get(str(configs.loc[variant, "norm"]))
        if family is not None:
            kinds.setdefault((family, _effective_ratio(configs.loc[variant])), variant)
    hin_ratio = _effective_ratio(configs.loc[reference])
    comparisons = []
    for (family, ratio), variant in kinds.items():
        full = kinds.get((family, 1.0))
        if ratio < 1.0 and full is not None:
            comparisons.append(
                KnobComparison(HALF_OR_FULL, variant, full, _comparison(table, variant, full, n_resamples, seed))
            )
    for (family, ratio), variant in kinds.items():
        if family != "instance" and math.isclose(ratio, hin_ratio):
            comparisons.append(
                KnobComparison(
                    WHICH_NORM, variant, reference, _comparison(table, variant, reference, n_resamples, seed)
                )
            )
    return comparisons


def knob_rows(comparisons: list[KnobComparison], table: pd.DataFrame) -> list[list[str]]:
    """`knob_separation` as table rows: question, comparison (with both learning rates where the searches
    chose different ones), Δ PSNR with interval and per-seed values, and whether it is significant (the
    words of `ladder_sentences`)."""
    configs = variant_configs(table)

    def rates(c: KnobComparison) -> str:
        mine, theirs = (_none(configs.loc[v, "lr"]) for v in (c.variant, c.reference))
        return "" if _same(mine, theirs) else f" (lr {_format_knob(mine)} vs {_format_knob(theirs)})"

    return [
        [
            c.question,
            f"{c.variant} − {c.reference}{rates(c)}",
            f"{_signed(c.delta.mean, PSNR_DIGITS)} dB {_interval(c.delta.low, c.delta.high, PSNR_DIGITS, c.delta.n_seeds)}",
            format_seed_deltas(c.delta.per_seed),
            _SIGNIFICANCE_WORDS.get(c.outcome, c.outcome),
        ]
        for c in comparisons
    ]


def knob_markdown(rows: pd.DataFrame) -> list[str]:
    """Markdown lines separating HIN's two knobs, per protocol (`knob_separation`), when the rows compare
    more than HIN against IN (none otherwise: the claims already compare those two). Rows of any
    number of protocols; the README and the app's ablation tab both show these lines."""
    table = []
    for protocol in protocols(rows):
        shown = select(rows, protocol=protocol)
        comparisons = knob_separation(shown)
        reference = default_baseline(shown)
        if any(c.question != HALF_OR_FULL or c.variant != reference for c in comparisons):
            table += [[f"`{protocol}`", *cells] for cells in knob_rows(comparisons, shown)]
    if not table:
        return []
    return [
        "Each knob alone (`hinet.results_table.knob_separation`): *half or full?* compares a norm on part of "
        "the channels with the same norm on all of them; *which norm?* compares another norm at HIN's fraction "
        "with HIN. Δ paired by (seed, image) within each protocol, hierarchical 95% interval.",
        "",
        to_markdown(["protocol", "question", "comparison", "Δ PSNR [95%]", "Δ per seed", "significance"], table),
        "",
    ]


# ----------------------------------------------------------------------------------------------------
# The training patch size: does training on larger patches remove the need for tiled scoring?

PATCH_KNOBS = {"train_patch", "train_batch"}  # varied together: the same pixels per step at each size


@dataclass(frozen=True)
class PatchAnswer:
    """Whether `protocol` still beats whole-image scoring once a variant trains on larger patches."""

    larger: str  # the variant trained on the larger patch
    smaller: str  # the same variant on the smaller patch (and a larger batch): nothing else differs
    protocol: str  # the test-time protocol whose gain over `whole` is asked about
    larger_gain: PairedDelta  # protocol − whole of `larger`, paired by (seed, image)
    smaller_gain: PairedDelta  # the same for `smaller`
    change: PairedDelta  # larger_gain − smaller_gain, paired by (seed, image): what the patch size changed
    verdict: str  # see `patch_answers`


# The verdicts of `patch_answers`, from the significance of both gains and of the change between them.
REMOVES_THE_NEED = "removes the need"
STILL_NEEDED = "does not remove the need"
NO_NEED = "no need at either patch size"
HELPS_ONLY_LARGER = "helps only at the larger patch"
GAINS_NOT_APART = "inconclusive: the two gains are not significantly apart"


def patch_answers(
    table: pd.DataFrame, n_resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_BOOTSTRAP_SEED
) -> list[PatchAnswer]:
    """For every pair of variants that differ only in the training patch and batch (`PATCH_KNOBS`; the
    tuned learning rate aside), and every protocol other than `whole`: the gain of that protocol over
    whole-image scoring for each (`protocol_gain`), the change of that gain between them (paired by seed and
    image), and a verdict from their significance: REMOVES_THE_NEED when the smaller patch gains, the larger
    does not and its gain is significantly smaller; GAINS_NOT_APART when the larger does not gain but its
    gain is not significantly smaller either; STILL_NEEDED when both gain; HELPS_ONLY_LARGER when only the
    larger one does; NO_NEED when neither; INCONCLUSIVE_ONE_SEED when a gain rests on one training seed;
    "not tested" when a variant was not scored under both protocols."""
    table = table.drop_duplicates(["variant", "seed", "protocol", "image"])
    configs = variant_configs(table)
    patch = pd.to_numeric(configs["train_patch"], errors="coerce")
    answers = []
    for smaller in configs.index:
        for larger in _single_factor_variants(configs, smaller, PATCH_KNOBS):
            if not patch[larger] > patch[smaller]:  # each pair once, and never with an unrecorded patch
                continue
            for protocol in [p for p in protocols(table) if p != DEFAULT_PROTOCOL]:
                pairs = [protocol_gain_differences(table, v, protocol) for v in (larger, smaller)]
                gains = [delta_of(diffs, n_resamples, seed=seed) for diffs in pairs]
                both = pairs[0].merge(pairs[1], on=["seed", "image"], suffixes=("_larger", "_smaller"))
                change = delta_of(both.assign(diff=both["diff_larger"] - both["diff_smaller"]), n_resamples, seed=seed)
                outcomes = [_outcome(gain) for gain in gains]
                if "missing" in outcomes or _outcome(change) == "missing":
                    verdict = "not tested"
                elif ONE_SEED in outcomes:
                    verdict = INCONCLUSIVE_ONE_SEED
                elif outcomes == ["above", "above"]:
                    verdict = STILL_NEEDED
                elif outcomes[0] == "above":
                    verdict = HELPS_ONLY_LARGER
                elif outcomes[1] != "above":
                    verdict = NO_NEED
                else:
                    verdict = REMOVES_THE_NEED if _outcome(change) == "below" else GAINS_NOT_APART
                answers.append(PatchAnswer(larger, smaller, protocol, gains[0], gains[1], change, verdict))
    return answers


def patch_rows(answers: list[PatchAnswer], table: pd.DataFrame) -> list[list[str]]:
    """`patch_answers` as table rows: variants with their patch, batch and learning rate, protocol, both
    gains, the change between them, verdict."""
    configs = variant_configs(table)

    def name(variant: str) -> str:
        size, batch, lr = (
            _format_knob(_none(configs.loc[variant, k]), k) for k in ("train_patch", "train_batch", "lr")
        )
        return f"{variant} ({size} px, batch {batch}, lr {lr})"

    def gain(delta: PairedDelta) -> str:
        text = f"{_signed(delta.mean, PSNR_DIGITS)} dB {_interval(delta.low, delta.high, PSNR_DIGITS, delta.n_seeds)}"
        return text + (f", per seed {format_seed_deltas(delta.per_seed)}" if delta.n_seeds > 1 else "")

    return [
        [
            name(a.larger),
            name(a.smaller),
            f"`{a.protocol}`",
            gain(a.larger_gain),
            gain(a.smaller_gain),
            gain(a.change),
            f"**{a.verdict}**",
        ]
        for a in answers
    ]


def patch_markdown(rows: pd.DataFrame) -> list[str]:
    """Markdown lines answering "does training on larger patches remove the need for tiled scoring?"
    (`patch_answers`), for rows with variants that differ only in the training patch (none otherwise).
    Rows of every protocol; the README and the app's ablation tab both show these lines."""
    answers = patch_answers(rows)
    if not answers:
        return []
    return [
        "Does training on larger patches remove the need for tiled or local scoring? Each gain is one run's "
        "score under the protocol minus its score under `whole`, paired by (seed, image) (same weights, same "
        "degraded image), with its hierarchical 95% interval, and *larger − smaller* is the change of that gain "
        "between the two runs of a seed; the verdict is computed from their significance "
        "(`hinet.results_table.patch_answers`).",
        "",
        to_markdown(
            [
                "larger patch",
                "smaller patch",
                "protocol",
                "gain vs whole, larger",
                "gain vs whole, smaller",
                "larger − smaller",
                "verdict",
            ],
            patch_rows(answers, rows),
        ),
        "",
    ]


# ----------------------------------------------------------------------------------------------------
# The budget ladder: one comparison trained at several step budgets (ablations `<family><budget>`,
# e.g. norm300, norm1k, norm3k, norm10k; configs/ablation_norm_*.yaml)

LADDER_FAMILY = "norm"
LADDER_COLUMNS = (
    "protocol",
    "steps",
    "ablation",
    "variant",
    "n_seeds",
    "n_paired_seeds",
    "psnr_mean",
    "psnr_std",
    "delta",
    "low",
    "high",
    "per_seed",
)


def budget_of(name: str, family: str = LADDER_FAMILY) -> int | None:
    """300 for "norm300", 3000 for "norm3k", None for a name outside the family (e.g. "norm" or "normx")."""
    rest = str(name)[len(family) :] if str(name).startswith(family) else ""
    if rest.endswith("k") and rest[:-1].isdigit():
        return int(rest[:-1]) * 1000
    return int(rest) if rest.isdigit() else None


def ladder_ablations(table: pd.DataFrame, family: str = LADDER_FAMILY) -> list[str]:
    """The family's ablations in the table, by increasing budget (the budget is part of the name)."""
    names = {str(a) for a in table["ablation"].unique() if budget_of(a, family) is not None}
    return sorted(names, key=lambda name: budget_of(name, family) or 0)  # every name has a budget


def budget_ladder(
    table: pd.DataFrame,
    family: str = LADDER_FAMILY,
    baseline: str = "hin",
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """One row per (protocol, budget, variant) of one task and level: the seed mean ± std of PSNR and the
    paired Δ to `baseline` at the same budget and protocol with its hierarchical interval (`LADDER_COLUMNS`).
    The ranking-vs-budget figure and the README's ladder table are drawn from it."""
    rows = []
    for ablation in ladder_ablations(table, family):
        at_budget = select(table, ablation=ablation)
        if baseline not in set(at_budget["variant"]):
            continue
        for protocol in protocols(at_budget):
            rung = select(at_budget, protocol=protocol)
            per_seed = seed_means(rung)
            for variant in variant_order(rung):
                delta = paired_delta(rung, variant, baseline, "psnr", n_resamples, DEFAULT_CONFIDENCE, seed)
                scores = per_seed[per_seed["variant"] == variant]["psnr"]
                rows.append(
                    {
                        "protocol": protocol,
                        "steps": budget_of(ablation, family),
                        "ablation": ablation,
                        "variant": variant,
                        "n_seeds": int(scores.size),
                        "n_paired_seeds": delta.n_seeds,  # the seeds both have: what Δ and its interval rest on
                        "psnr_mean": float(scores.mean()),
                        "psnr_std": float(scores.std(ddof=1)) if scores.size > 1 else math.nan,
                        "delta": delta.mean,
                        "low": delta.low,
                        "high": delta.high,
                        "per_seed": delta.per_seed,
                    }
                )
    return pd.DataFrame(rows, columns=list(LADDER_COLUMNS))


def ladder_claims(
    table: pd.DataFrame,
    family: str = LADDER_FAMILY,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """The paper's claims checked at each budget and protocol of the ladder (`check_paper_claims` on that
    rung's rows): columns claim, steps, protocol, verdict, evidence; claims the ladder cannot test (e.g.
    placement, which has its own grid) are left out."""
    rows = []
    for ablation in ladder_ablations(table, family):
        at_budget = select(table, ablation=ablation)
        for protocol, checks in claims_by_protocol(at_budget, n_resamples, seed).items():
            for check in checks:
                if check.verdict != "not tested":
                    rows.append(
                        {
                            "claim": check.claim,
                            "steps": budget_of(ablation, family),
                            "protocol": protocol,
                            "verdict": check.verdict,
                            "evidence": check.evidence,
                        }
                    )
    return pd.DataFrame(rows, columns=["claim", "steps", "protocol", "verdict", "evidence"])


def verdict_grid(claims: pd.DataFrame) -> pd.DataFrame:
    """`ladder_claims` as a grid: a row per (claim, protocol), a column per budget, the verdict in each cell."""
    if claims.empty:
        return pd.DataFrame()
    grid = claims.pivot_table(index=["claim", "protocol"], columns="steps", values="verdict", aggfunc="first")
    order = {p: i for i, p in enumerate(STATS_PROTOCOLS)}
    grid = grid.reset_index()
    grid["_claim"] = grid["claim"].map({c: i for i, c in enumerate(_CLAIMS)})
    grid["_protocol"] = grid["protocol"].map(order)
    grid = grid.sort_values(["_claim", "_protocol"]).drop(columns=["_claim", "_protocol"])
    grid.columns = ["claim", "protocol", *[format_steps(s) for s in grid.columns[2:]]]
    return grid.reset_index(drop=True)


def format_steps(steps: int) -> str:
    """3000 -> "3k", 300 -> "300" (the budget names of the ladder grids)."""
    steps = int(steps)
    return f"{steps // 1000}k" if steps >= 1000 and steps % 1000 == 0 else str(steps)


_SIGNIFICANCE_WORDS = {
    "above": "significant",
    "below": "significant",
    "tie": "within the interval",
    ONE_SEED: "1 seed: cannot be significant",
}


def ladder_sentences(ladder: pd.DataFrame, baseline: str = "hin") -> list[str]:
    """Plain words per protocol, generated from `budget_ladder` rows: at each budget, which variant has the
    best paired Δ to the baseline, and whether it "leads" (the interval of that Δ excludes 0 over 2+ paired
    seeds: `significance`) or only "has the best mean". The ranking is by the paired Δ (same seeds and
    images), never by means over unequal seeds."""
    sentences = []
    for protocol in [p for p in STATS_PROTOCOLS if p in set(ladder["protocol"])]:
        parts = []
        for steps, rung in ladder[ladder["protocol"] == protocol].groupby("steps", sort=True):
            leader = rung.loc[rung["delta"].fillna(-math.inf).idxmax()]
            if leader["variant"] == baseline:
                runner = rung[rung["variant"] != baseline]
                if runner.empty:
                    continue
                second = runner.loc[runner["delta"].fillna(-math.inf).idxmax()]
                outcome = significance(second["low"], second["high"], len(second["per_seed"]))
                every_below = all(significance(r.low, r.high, len(r.per_seed)) == "below" for r in runner.itertuples())
                ahead = f"{baseline} leads" if every_below else f"{baseline} has the best mean"
                parts.append(
                    f"at {format_steps(steps)} steps {ahead} ({second['variant']} "
                    f"{_signed(second['delta'], PSNR_DIGITS)} dB, {_SIGNIFICANCE_WORDS[outcome]}; "
                    f"{len(second['per_seed'])} paired seeds)"
                )
            else:
                outcome = significance(leader["low"], leader["high"], len(leader["per_seed"]))
                ahead = f"{leader['variant']} leads" if outcome == "above" else f"{leader['variant']} has the best mean"
                parts.append(
                    f"at {format_steps(steps)} steps {ahead} "
                    f"({_signed(leader['delta'], PSNR_DIGITS)} dB vs {baseline}, {_SIGNIFICANCE_WORDS[outcome]}; "
                    f"{len(leader['per_seed'])} paired seeds)"
                )
        if parts:
            sentences.append(f"Under `{protocol}` scoring: " + "; ".join(parts) + ".")
    return sentences
