"""Evaluate a trained HINet (and classical baselines) on clean test images degraded on the fly, or on
given degraded/clean pairs:

    python -m hinet.evaluate runs/denoise/model.safetensors --task denoise --level 25 --baselines
    python -m hinet.evaluate model.safetensors --task deblur --level length=15,angle=30 --images my_photos/
    python -m hinet.evaluate model.safetensors --task jpeg --level 10 --pairs lq_dir/ gt_dir/

Default images: `hinet.data.test_images()` (sporco's colour images, never used for training). Every
image's degraded input is drawn from a generator seeded by (seed, image name), so every model and every
baseline in any run sees identical inputs. Metrics: `hinet.metrics` (default protocol: RGB, uint8-rounded,
no border; Y channel for derain as Rain13k is reported); the protocol is printed with the table.

Baselines (`--baselines`) run on the same degraded inputs, each timed per image:
denoise: BM3D (`bm3d.bm3d_rgb`, true sigma) and skimage non-local means (true sigma, h = 0.6 sigma,
fast mode, 5x5 patches, 13x13 search; h chosen on a skimage training image, not on the test set);
deblur: Richardson-Lucy with the true kernel, 30 iterations per channel on a symmetrically padded copy;
jpeg: none beyond the input; derain: a 5x5 median filter per channel. The "input" row (the degraded
image itself) is listed with the baselines. With `--pairs` the baselines assume the --task/--level given.
Which baselines a task has is its record's `baselines` (`hinet.tasks`); their code is `BASELINES` here.

Test-time statistics (`--protocol`, see `hinet.inference.STATS_PROTOCOLS`): "whole" (default) restores
each image in one pass; "tiled" in tiles of the training patch; "local" in one pass with TLC's windowed
norm statistics; "all" runs the model under each of them (the baselines once: they have no statistics).
Every row records it in the column `stats` (the column `protocol` is the metric protocol). The training
patch is `--train-patch`, else the checkpoint's "train_patch" metadata, else 64 px (the summary says so).

Files of `--images` / pairs of `--pairs` that cannot be read are skipped: the others are evaluated and
reported, the skipped ones are listed on stderr at the end, and the exit status is 2.

Exit status 0 on success, 2 on any user error (one line on stderr) or skipped file. `-v`/`-q` set how
much goes to stderr (`hinet.logs`).
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypedDict

import numpy as np

from hinet import data
from hinet.checkpoint import load_any_checkpoint
from hinet.degradations import motion_kernel
from hinet.errors import ConfigError, HINetError, ImageError
from hinet.image import load_image, save_image
from hinet.inference import STATS_PROTOCOLS, describe_stats, restore, training_patch
from hinet.io import atomic_write
from hinet.local_stats import DEFAULT_FACTOR, EDGES, uses_input_statistics
from hinet.logs import add_verbosity_flags, configure_logging, verbosity
from hinet.metrics import Protocol, evaluate_pair
from hinet.model import HINet
from hinet.tasks import TASK_NAMES, TASKS, get_task

log = logging.getLogger(__name__)

EXIT_ERROR = 2
MODEL_METHOD = "hinet"
ALL_STATS = "all"  # --protocol all: the model under every one of STATS_PROTOCOLS
CSV_COLUMNS = ("image", "method", "stats", "psnr", "ssim", "seconds", "task", "strength", "seed", "protocol")
Skipped = list[tuple[str, str]]  # (file or pair name, why it could not be read)


def image_seed(seed: int, name: str) -> np.random.Generator:
    """The generator for one image's degradation: depends on (seed, name) only, not on the order of
    images or on which methods run (crc32, unlike `hash`, is the same in every process)."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode("utf-8"))])


def degraded_input(clean: np.ndarray, task: str, strength: Mapping[str, float], seed: int, name: str) -> np.ndarray:
    return data.degrade(clean, task, image_seed(seed, name), kernel=None, **strength)


# --------------------------------------------------------------------------------------------------
# Classical baselines: each takes the degraded image and the true degradation strength.


# The baselines import their packages when they run: bm3d and scipy add about a second to every start of
# the CLI (measured with `python -c "import bm3d"` against torch + numpy alone), most runs use no baseline.


def _bm3d(lq: np.ndarray, strength: Mapping[str, float]) -> np.ndarray:
    import bm3d

    sigma = strength["sigma"] / 255.0
    if sigma == 0:
        return lq
    denoise = getattr(bm3d, "bm3d_rgb", None)
    if denoise is not None:
        return np.asarray(denoise(lq, sigma), dtype=np.float32)
    return np.stack([np.asarray(bm3d.bm3d(lq[:, :, c], sigma_psd=sigma), dtype=np.float32) for c in range(3)], 2)


def _nl_means(lq: np.ndarray, strength: Mapping[str, float]) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    sigma = strength["sigma"] / 255.0
    if sigma == 0:
        return lq
    return denoise_nl_means(
        lq, h=0.6 * sigma, sigma=sigma, fast_mode=True, patch_size=5, patch_distance=6, channel_axis=-1
    ).astype(np.float32)


def _richardson_lucy(lq: np.ndarray, strength: Mapping[str, float]) -> np.ndarray:
    from skimage.restoration import richardson_lucy

    kernel = motion_kernel(strength["length"], strength["angle"])
    pad = kernel.shape[0]  # skimage convolves with zero borders: a symmetric margin avoids edge ringing
    padded = np.pad(np.clip(lq, 0, 1), ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    channels = [richardson_lucy(padded[:, :, c], kernel, num_iter=30, clip=True) for c in range(3)]
    return np.stack(channels, axis=2)[pad:-pad, pad:-pad].astype(np.float32)


def _median(lq: np.ndarray, strength: Mapping[str, float]) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(lq, size=(5, 5, 1), mode="reflect")


# name -> method; a task runs the ones its record names (`hinet.tasks.Task.baselines`)
BASELINES: dict[str, Callable[[np.ndarray, Mapping[str, float]], np.ndarray]] = {
    "bm3d": _bm3d,
    "nl_means": _nl_means,
    "richardson_lucy": _richardson_lucy,
    "median5": _median,
}


# --------------------------------------------------------------------------------------------------


def _chosen_baselines(task: str, baselines: bool | str | Iterable[str] | None) -> list[str] | None:
    """None for no baseline rows; else the baseline names to run (True = all of the task's)."""
    if baselines is False or baselines is None:
        return None
    own = get_task(task).baselines
    if baselines is True:
        return list(own)
    names = [baselines] if isinstance(baselines, str) else list(baselines)
    unknown = [name for name in names if name not in own]
    if unknown:
        raise ConfigError(
            f"{task} has no baseline {', '.join(unknown)}; "
            f"its baselines are: {', '.join(own) or 'none (only the input)'}"
        )
    return names


def chosen_stats(stats: str | Iterable[str]) -> list[str]:
    """The stats protocols to run: one of `STATS_PROTOCOLS`, "all", or a list of them."""
    names = list(STATS_PROTOCOLS) if stats == ALL_STATS else [stats] if isinstance(stats, str) else list(stats)
    unknown = [name for name in names if name not in STATS_PROTOCOLS]
    if unknown or not names:
        raise ConfigError(
            f"the statistics protocol must be one of {', '.join(STATS_PROTOCOLS)} or {ALL_STATS}; got {stats!r}"
        )
    return list(dict.fromkeys(names))


def _output_folder(method: str, stats: str) -> str:
    """`<method>` for the model under "whole" and for baselines (as before protocols existed), else
    `<method>_<stats>`, so the protocols of one run do not overwrite each other's images."""
    return method if stats in ("", "whole") else f"{method}_{stats}"


def _evaluate_items(
    model: HINet | None,
    task: str,
    strength: Mapping[str, float],
    items: Iterable,
    protocol: Protocol,
    tile: int | None,
    baselines: bool,
    save_dir: Path | None,
    method_name: str,
    progress: Callable[[str, str], None] | None,
    stats: list[str],
    restore_options: RestoreOptions,
) -> list[dict]:
    chosen = _chosen_baselines(task, baselines)
    rows = []
    for name, lq, gt in items:
        methods: list[tuple[str, str, Callable[[], np.ndarray]]] = []  # (method, stats, run)
        if chosen is not None:
            methods.append(("input", "", functools.partial(_unchanged, lq)))
            for method in chosen:
                methods.append((method, "", functools.partial(BASELINES[method], lq, strength)))
        if model is not None:
            for protocol_name in stats:
                methods.append(
                    (
                        method_name,
                        protocol_name,
                        functools.partial(restore, model, lq, tile=tile, stats=protocol_name, **restore_options),
                    )
                )
        for method, protocol_name, run in methods:
            if progress is not None:
                progress(name, method if protocol_name in ("", "whole") else f"{method} ({protocol_name})")
            start = time.perf_counter()
            output = run()
            seconds = 0.0 if method == "input" else time.perf_counter() - start
            scores = evaluate_pair(output, gt, protocol)
            rows.append(
                {
                    "image": name,
                    "method": method,
                    "stats": protocol_name,
                    "psnr": scores["psnr"],
                    "ssim": scores["ssim"],
                    "seconds": seconds,
                }
            )
            if save_dir is not None:
                folder = _output_folder(method, protocol_name)
                save_image(Path(save_dir) / folder / f"{Path(name).stem}.png", np.clip(output, 0, 1))
    return rows


class RestoreOptions(TypedDict, total=False):
    """The `restore` keywords shared by every protocol of one evaluation."""

    train_patch: int | None
    local_factor: float
    local_edge: str
    local_min_ratio: float


def _unchanged(image: np.ndarray) -> np.ndarray:
    return image


def _restore_options(
    stats: list[str], train_patch: int | None, local_factor: float, local_edge: str, local_min_ratio: float
) -> RestoreOptions:
    """`restore` keywords shared by every protocol, checked once before any image is processed."""
    options = RestoreOptions(
        train_patch=train_patch, local_factor=local_factor, local_edge=local_edge, local_min_ratio=local_min_ratio
    )
    for name in stats:
        describe_stats(name, **options)  # raises ConfigError for a missing train_patch or a bad option
    return options


def evaluate_model(
    model: HINet | None,
    task: str,
    strength: Mapping[str, float] | None = None,
    images: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
    protocol: Protocol | None = None,
    tile: int | None = None,
    baselines: bool = False,
    save_dir: str | os.PathLike[str] | None = None,
    method_name: str = MODEL_METHOD,
    progress: Callable[[str, str], None] | None = None,
    stats: str | Iterable[str] = "whole",
    train_patch: int | None = None,
    local_factor: float = DEFAULT_FACTOR,
    local_edge: str = "replicate",
    local_min_ratio: float = 1.0,
) -> list[dict]:
    """Score `model` (a HINet, or None for baselines only) on `images` (name -> clean H x W x 3 float;
    default `data.test_images()`) degraded for `task` at `strength` (default: the task's defaults).

    Returns one row per image and method: ``{"image", "method", "stats", "psnr", "ssim", "seconds"}``; the
    model's method is `method_name`. `baselines`: True adds the row "input" and every one of the task's
    baselines before the model's row; a list of names runs only those (plus "input")
    `protocol` defaults to the task's (`hinet.tasks.Task.protocol`). `save_dir` writes `<save_dir>/<method>/<image>.png`
    (`<method>_<stats>` for the model under "tiled"/"local").
    `stats`: the test-time statistics protocol(s) of the model (`STATS_PROTOCOLS`, "all" or a list): one
    model row per image and protocol, `stats` column set; baseline rows have stats "". "tiled"/"local" need
    `train_patch`; `tile` and the `local_*` options are passed to `hinet.inference.restore`.
    """
    level = data.validate_strength(task, **(strength or {}))
    images = data.test_images() if images is None else images
    if not images:
        raise ConfigError("no images to evaluate on")
    protocol = get_task(task).protocol if protocol is None else protocol
    stats = chosen_stats(stats)
    options = (
        _restore_options(stats, train_patch, local_factor, local_edge, local_min_ratio)
        if model is not None
        else RestoreOptions()
    )
    items = (
        (name, degraded_input(np.asarray(clean, np.float32), task, level, seed, name), clean)
        for name, clean in images.items()
    )
    return _evaluate_items(
        model,
        task,
        level,
        items,
        protocol,
        tile,
        baselines,
        None if save_dir is None else Path(save_dir),
        method_name,
        progress,
        stats,
        options,
    )


def evaluate_pairs(
    model: HINet | None,
    pairs: data.PairedFolder,
    task: str,
    strength: Mapping[str, float] | None = None,
    protocol: Protocol | None = None,
    tile: int | None = None,
    baselines: bool = False,
    save_dir: str | os.PathLike[str] | None = None,
    method_name: str = MODEL_METHOD,
    progress: Callable[[str, str], None] | None = None,
    stats: str | Iterable[str] = "whole",
    train_patch: int | None = None,
    local_factor: float = DEFAULT_FACTOR,
    local_edge: str = "replicate",
    local_min_ratio: float = 1.0,
    skipped: Skipped | None = None,
) -> list[dict]:
    """Like `evaluate_model` on given (degraded, clean) pairs; `task`/`strength` only inform the baselines.

    `skipped`: None lets an unreadable pair raise `ImageError`; a list skips it and appends (name, reason)."""
    level = data.validate_strength(task, **(strength or {}))
    protocol = get_task(task).protocol if protocol is None else protocol
    stats = chosen_stats(stats)
    options = (
        _restore_options(stats, train_patch, local_factor, local_edge, local_min_ratio)
        if model is not None
        else RestoreOptions()
    )
    items = iter(pairs) if skipped is None else _readable_pairs(pairs, skipped)
    return _evaluate_items(
        model,
        task,
        level,
        items,
        protocol,
        tile,
        baselines,
        None if save_dir is None else Path(save_dir),
        method_name,
        progress,
        stats,
        options,
    )


def _readable_pairs(pairs: data.PairedFolder, skipped: Skipped) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    for index, name in enumerate(pairs.names):
        try:
            pair = pairs[index]
        except ImageError as error:
            skipped.append((name, str(error)))
            continue
        yield pair


def readable_folder_images(directory: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], Skipped]:
    """Every image of `directory` that can be read, by file name, and (file name, reason) for each one
    that cannot. Raises `ConfigError` for a missing or empty folder, `ImageError` when no file is readable."""
    images: dict[str, np.ndarray] = {}
    skipped: Skipped = []
    for path in data.image_files(directory):
        try:
            loaded = load_image(path)
        except ImageError as error:
            skipped.append((path.name, str(error)))
            continue
        for warning in loaded.warnings:
            log.warning("%s", warning)
        images[path.name] = loaded.pixels
    if not images:
        raise ImageError(
            f"none of the {len(skipped)} image file(s) in {directory} can be read; "
            + "; ".join(f"{name}: {reason}" for name, reason in skipped[:3])
        )
    return images, skipped


def summarize(rows: list[dict]) -> list[dict]:
    """Mean psnr, ssim and seconds per (level, method, stats), in the order they first appear (rows of a
    run over several levels carry their `strength`, the formatted level)."""
    keys = list(dict.fromkeys((row.get("strength", ""), row["method"], row.get("stats", "")) for row in rows))
    summary = []
    for strength, method, stats in keys:
        chosen = [
            row
            for row in rows
            if (row.get("strength", ""), row["method"], row.get("stats", "")) == (strength, method, stats)
        ]
        summary.append(
            {
                "image": "mean",
                **({"strength": strength} if strength else {}),
                "method": method,
                "stats": stats,
                "images": len(chosen),
                **{key: float(np.mean([row[key] for row in chosen])) for key in ("psnr", "ssim", "seconds")},
            }
        )
    return summary


def format_table(summary: list[dict]) -> str:
    levels = any("strength" in row for row in summary)
    width = max([len(row.get("strength", "")) for row in summary] + [5]) + 2 if levels else 0
    lines = [
        f"{'level' if levels else '':<{width}}{'method':<18}{'stats':<7}{'images':>7}{'PSNR (dB)':>11}{'SSIM':>8}{'s/image':>10}"
    ]
    for row in summary:
        lines.append(
            f"{row.get('strength', ''):<{width}}{row['method']:<18}{row.get('stats', ''):<7}{row['images']:>7}{row['psnr']:>11.2f}"
            f"{row['ssim']:>8.4f}{row['seconds']:>10.3f}"
        )
    return "\n".join(lines)


def write_csv(
    path: str | os.PathLike[str],
    rows: list[dict],
    task: str,
    strength: Mapping[str, float] | None,
    seed: int,
    protocol: Protocol,
) -> Path:
    """Write `rows` plus one mean row per level, method and stats protocol ("image" = "mean") as CSV
    (`CSV_COLUMNS`), atomically. A row's own `strength` (a run over several levels) wins over `strength`;
    rows without "stats" (written before protocols existed) get ""."""
    strength = data.validate_strength(task, **(strength or {}))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    level = data.format_level(strength)

    def write(temp: Path) -> None:
        with open(temp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in rows + summarize(rows):
                writer.writerow(
                    {
                        **row,
                        "stats": row.get("stats", ""),
                        "psnr": f"{row['psnr']:.4f}",
                        "ssim": f"{row['ssim']:.6f}",
                        "seconds": f"{row['seconds']:.4f}",
                        "task": task,
                        "strength": row.get("strength") or level,
                        "seed": seed,
                        "protocol": protocol.describe(),
                    }
                )

    atomic_write(path, write)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hinet.evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="a hinet .safetensors checkpoint or an official HINet .pth")
    parser.add_argument("--task", choices=TASK_NAMES, help="default: the checkpoint's 'task' metadata")
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "--level",
        action="append",
        default=None,
        help=f"strength: a number ({' / '.join(t.primary for t in TASKS.values())}) or "
        "key=value,... (e.g. length=15,angle=30); repeat it for several levels; default: the task's "
        "defaults (hinet.tasks)",
    )
    levels.add_argument(
        "--task-levels",
        action="store_true",
        help="every evaluation level of the task (hinet.tasks: "
        + "; ".join(f"{t.name} {', '.join(n for n, _ in t.evaluation_levels)}" for t in TASKS.values())
        + ")",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", metavar="DIR", help="clean images to degrade (default: the sporco test set)")
    source.add_argument("--pairs", nargs=2, metavar=("LQ", "GT"), help="folders of degraded and clean images")
    parser.add_argument("--baselines", action="store_true", help="also run the classical methods")
    parser.add_argument("--out-csv", metavar="F", help="write per-image and mean rows as CSV")
    parser.add_argument("--save-outputs", metavar="DIR", help="write <DIR>/<method>/<image>.png")
    parser.add_argument("--tile", type=int, default=None, help="tile size for the model (default: whole image)")
    parser.add_argument(
        "--protocol",
        choices=STATS_PROTOCOLS + (ALL_STATS,),
        default="whole",
        help="test-time statistics of the model's norms: whole (one pass, global statistics), "
        "tiled (tiles of the training patch), local (TLC windows), all (each); default whole",
    )
    parser.add_argument(
        "--train-patch",
        type=int,
        default=None,
        help="training patch size in px (default: the checkpoint's train_patch metadata, else 64)",
    )
    parser.add_argument(
        "--local-factor",
        type=float,
        default=DEFAULT_FACTOR,
        help=f"local window = this x the training map (default {DEFAULT_FACTOR:g})",
    )
    parser.add_argument(
        "--local-edge",
        choices=EDGES,
        default="replicate",
        help="local windows at the border: replicate the nearest full window (TLC) or shrink",
    )
    parser.add_argument(
        "--local-min-ratio",
        type=float,
        default=1.0,
        help="local windows only at maps larger than this x their training size (default 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the degradations (default 0)")
    parser.add_argument(
        "--channel",
        choices=("rgb", "y"),
        default=None,
        help="metric channel (default: the task's: "
        + ", ".join(f"{t.name} {t.protocol.channel}" for t in TASKS.values())
        + ")",
    )
    parser.add_argument("--border", type=int, default=0, help="pixels cropped from each side before metrics")
    parser.add_argument(
        "--float",
        dest="round_to_uint8",
        action="store_false",
        help="measure float outputs without rounding to uint8 (SIDD style)",
    )
    add_verbosity_flags(parser)
    return parser


def run(args: argparse.Namespace) -> tuple[list[dict], Skipped]:
    """Evaluate and print the report; returns (rows, the files or pairs skipped as unreadable)."""
    model, metadata = load_any_checkpoint(args.checkpoint)
    task = args.task or metadata.get("task")
    if not isinstance(task, str) or task not in TASKS:
        raise ConfigError(f"give --task ({', '.join(TASK_NAMES)}): the checkpoint does not name its task")
    if args.task_levels:
        strengths = [level for _, level in get_task(task).evaluation_levels]
    elif args.level:
        strengths = [data.parse_level(task, text) for text in args.level]
    else:
        strengths = [data.validate_strength(task)]
    if args.pairs and len(strengths) > 1:
        raise ConfigError("--pairs are degraded already: give at most one --level with them (for the report)")
    strength = strengths[0]
    if args.tile is not None and args.tile < 1:
        raise ConfigError(f"--tile must be a positive number of pixels, got {args.tile}")
    if args.tile is not None and args.protocol in ("tiled", ALL_STATS):
        raise ConfigError(
            "--tile replaces the tiles of --protocol tiled (the training patch), so whole and tiled "
            "would be the same computation under two labels; drop --tile, or use --protocol whole "
            "or local with it"
        )
    base = get_task(task).protocol
    protocol = Protocol(channel=args.channel or base.channel, round_to_uint8=args.round_to_uint8, border=args.border)
    stats = chosen_stats(args.protocol)
    if args.train_patch is not None:
        train_patch, assumption = args.train_patch, None
    else:
        train_patch, assumption = training_patch(metadata)
    local = dict(local_factor=args.local_factor, local_edge=args.local_edge, local_min_ratio=args.local_min_ratio)
    stats_lines = [describe_stats(name, train_patch, args.tile, None, **local) for name in stats]

    def progress(name: str, method: str) -> None:
        log.info("  %s: %s", name, method)

    common = dict(
        protocol=protocol,
        tile=args.tile,
        baselines=args.baselines,
        save_dir=args.save_outputs,
        progress=progress,
        stats=stats,
        train_patch=train_patch,
        **local,
    )
    skipped: Skipped = []
    if args.pairs:
        pairs = data.PairedFolder(*args.pairs)
        rows = evaluate_pairs(model, pairs, task, strength, skipped=skipped, **common)
        if not rows:
            raise ImageError(
                f"none of the {len(pairs)} pairs can be read; "
                + "; ".join(f"{name}: {reason}" for name, reason in skipped[:3])
            )
        source = f"pairs {args.pairs[0]} / {args.pairs[1]}"
    else:
        images, skipped = readable_folder_images(args.images) if args.images else (data.test_images(), [])
        rows = []
        for level_strength in strengths:
            level_rows = evaluate_model(model, task, level_strength, images, seed=args.seed, **common)
            if len(strengths) > 1:
                level_rows = [dict(row, strength=data.format_level(level_strength)) for row in level_rows]
            rows += level_rows
        source = f"{len(images)} image{'s' if len(images) != 1 else ''} from {args.images or 'the sporco test set'}, degradation seed {args.seed}"
    level = "; ".join(", ".join(f"{k}={v:g}" for k, v in each.items()) for each in strengths)
    print(f"{Path(args.checkpoint).name}: {task} ({level}); {source}")
    if "richardson_lucy" in {row["method"] for row in rows}:
        print("note: richardson_lucy is given the true blur kernel (a blind model is not): an upper reference")
    print(f"protocol: {protocol.describe()}")
    for line in stats_lines:
        print(f"statistics: {line}")
    if assumption is not None and stats != ["whole"]:
        print(f"note: {assumption} (give --train-patch to override)")
    if "local" in stats and not uses_input_statistics(model):
        print(
            f"note: no norm of this model computes statistics from its input (norm {model.config.norm}): "
            "local runs the same computation as whole"
        )
    print(format_table(summarize(rows)))
    if args.out_csv:
        print(f"wrote {write_csv(args.out_csv, rows, task, strength, args.seed, protocol)}")
    return rows, skipped


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(verbosity(args))
    try:
        _, skipped = run(args)
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:  # e.g. an unwritable --out-csv or --save-outputs location
        print(f"error: {error.filename or ''} {error.strerror or error}".strip(), file=sys.stderr)
        return EXIT_ERROR
    if skipped:
        print(f"error: {len(skipped)} unreadable image(s) skipped (the table covers the rest):", file=sys.stderr)
        for name, reason in skipped:
            print(f"  {name}: {reason}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
