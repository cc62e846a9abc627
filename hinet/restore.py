"""Restore images from the command line: one file, or every image in a folder.

    python -m hinet.restore noisy.png clean.png --task denoise
    python -m hinet.restore photos/ restored/ --task deblur --tile 512
    python -m hinet.restore in.png out.png --task denoise --checkpoint runs/my_run/model.safetensors
    python -m hinet.restore in.png out.png --task denoise --variant small_hin   # untrained: a smoke test only
    python -m hinet.restore in.png out.png --task deblur --stats whole          # not the model's default

Outputs are lossless PNG (16-bit when the input was 16-bit; gray stays gray; alpha is kept untouched).
Without --checkpoint/--variant the task's shipped model `results/models/<task>.safetensors` is used.
`--stats` (default: the model's own, chosen on validation when it was shipped; `hinet.stats_choice`) says
how the norms' statistics are computed at test time; the command prints which it used and why. `--tile`
bounds memory; when the model's default is `tiled`, its training-patch tiles bound it already and run.
Exit code 0 when everything was written, 2 on any error (folders: the other files are still written and
the failures are listed at the end). Warnings (an untrained variant, a model trained for another task, an
animated image of which only the first frame is used) go to stderr; `-q` hides the progress bar, `-qq`
the warnings too, `-v` adds detail.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hinet.checkpoint import load_any_checkpoint
from hinet.errors import ConfigError, HINetError
from hinet.image import load_image, save_image
from hinet.inference import STATS_PROTOCOLS, restore, training_patch
from hinet.logs import PACKAGE_LOGGER, add_verbosity_flags, configure_logging, verbosity
from hinet.model import HINet
from hinet.registry import VARIANTS, create_model
from hinet.runs import SHIPPED_MODELS_DIR
from hinet.stats_choice import DEFAULT_STATS, recorded_stats
from hinet.tasks import TASK_NAMES

# Not __name__: under `python -m hinet.restore` that is "__main__", outside the logger configure_logging
# sets up, so warnings lost their "warning:" prefix and -qq did not hide them.
log = logging.getLogger("hinet.restore")

DEFAULT_MODELS_DIR = SHIPPED_MODELS_DIR  # each task's model when no --checkpoint is given
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
EXIT_ERROR = 2


def default_checkpoint(task: str) -> Path:
    return DEFAULT_MODELS_DIR / f"{task}.safetensors"


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_model(task: str, checkpoint: str | None, variant: str | None) -> tuple[HINet, str, dict[str, Any]]:
    """The model to run, a one-line description of it and its metadata (raises HINetError with a plain
    message)."""
    if variant is not None:
        if variant not in VARIANTS:
            raise ConfigError(f"unknown variant {variant!r}; known variants: {', '.join(VARIANTS)}")
        log.warning(
            "--variant %s builds an UNTRAINED model with random weights. Its output is NOT a restoration; use it "
            "only to test the pipeline. Pass --checkpoint or train a model for real results.",
            variant,
        )
        return create_model(variant), f"untrained {variant}", {}
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(task)
    if checkpoint is None and not path.is_file():
        raise ConfigError(
            f"no model for task {task!r}: {_display(path)} is missing. Train one with "
            f"`python -m hinet.train --config configs/{task}_small.yaml` and copy the run's model.safetensors "
            f"to {_display(path)}, or pass --checkpoint FILE (or --variant NAME for an untrained smoke test)"
        )
    model, metadata = load_any_checkpoint(path)
    trained_for = metadata.get("task")
    if trained_for is not None and trained_for != task:
        log.warning("%s was trained for %r, not %r", path.name, trained_for, task)
    return model, f"{path.name}", metadata


def chosen_stats(requested: str, metadata: dict) -> tuple[str, str]:
    """(test-time statistics, why): the model's recorded default for "default", else what was asked."""
    if requested == DEFAULT_STATS:
        return recorded_stats(metadata)
    return requested, "as requested (--stats)"


def _output_names(inputs: list[Path]) -> dict[Path, str]:
    """<stem>.png per input; inputs sharing a stem (a.jpg, a.png) keep their suffix to stay distinct."""
    stems: dict[str, int] = {}
    for path in inputs:
        stems[path.stem] = stems.get(path.stem, 0) + 1
    return {p: (f"{p.stem}.png" if stems[p.stem] == 1 else f"{p.name}.png") for p in inputs}


def plan(source: Path, target: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a file or a folder; never one that would overwrite its input."""
    jobs = _pairs(source, target)
    for src, dst in jobs:
        if dst.resolve() == src.resolve():
            raise ConfigError(f"writing {dst} would overwrite the input; choose another output")
    return jobs


def _pairs(source: Path, target: Path) -> list[tuple[Path, Path]]:
    if not source.exists():
        raise ConfigError(f"input not found: {source}")
    if source.is_dir():
        if target.exists() and not target.is_dir():
            raise ConfigError(f"the input is a folder, so the output must be a folder; {target} is a file")
        inputs = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not inputs:
            raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {source}")
        names = _output_names(inputs)
        return [(p, target / names[p]) for p in inputs]
    if target.is_dir():
        return [(source, target / f"{source.stem}.png")]
    if target.suffix.lower() != ".png":
        raise ConfigError(f"the output must be a .png file or an existing folder; got {target}")
    return [(source, target)]


def restore_file(
    model: HINet,
    source: Path,
    target: Path,
    tile: int | None,
    overlap: int,
    stats: str = "whole",
    train_patch: int = 64,
) -> None:
    loaded = load_image(source)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    pixels = restore(
        model,
        loaded.pixels,
        tile=tile,
        overlap=overlap if tile is not None or stats != "tiled" else None,
        stats=stats,
        train_patch=train_patch,
    )
    save_image(target, pixels, like=loaded)


def _one_line(error: BaseException) -> str:
    if isinstance(error, MemoryError) or "allocate" in str(error):
        return "out of memory; pass --tile 256 (or smaller) to restore in tiles"
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("output", type=Path, help="a .png file (or a folder) for a file input; a folder for a folder")
    parser.add_argument("--task", required=True, choices=TASK_NAMES, help="selects the default model")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--checkpoint",
        help="a .safetensors checkpoint or an official .pth (default: results/models/<task>.safetensors)",
    )
    source.add_argument("--variant", help="an UNTRAINED registry variant, for testing the pipeline only")
    parser.add_argument("--tile", type=int, default=None, help="restore in tiles of N x N pixels (bounds memory)")
    parser.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default 32)")
    parser.add_argument(
        "--stats",
        choices=(DEFAULT_STATS, *STATS_PROTOCOLS),
        default=DEFAULT_STATS,
        help="test-time statistics of the model's norms: whole image, tiles of the training patch, or local "
        "windows; default: the model's own default, chosen on validation when it was shipped (else whole)",
    )
    add_verbosity_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(verbosity(args))

    try:
        model, description, metadata = load_model(args.task, args.checkpoint, args.variant)
        stats, why = chosen_stats(args.stats, metadata)
        train_patch, assumed = training_patch(metadata)
        if args.tile is not None and args.tile < 1:
            raise ConfigError(f"--tile must be a positive number of pixels; got {args.tile}")
        tile = args.tile
        if tile is not None and stats == "tiled":
            if args.stats != DEFAULT_STATS:
                raise ConfigError("--tile replaces the training-patch tiles of --stats tiled; give one of them")
            # The model's own default: a --tile given to bound memory must not stop it (nor replace its tiles).
            why += f"; --tile {tile} is not used: the {train_patch} px training-patch tiles bound memory already"
            tile = None
        jobs = plan(args.input, args.output)
        if args.overlap < 0:
            raise ConfigError(f"--overlap must be 0 or more; got {args.overlap}")
    except HINetError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_ERROR

    if verbosity(args) >= 0:
        # restore's own note on an assumed patch points to evaluate's --train-patch, which this command lacks.
        assumed_patch = f"; training patch assumed {train_patch} px (the checkpoint does not record it)"
        print(f"test-time statistics: {stats} ({why})" + (assumed_patch if assumed and stats != "whole" else ""))
    failures: list[tuple[Path, str]] = []
    bar = tqdm(jobs, desc=f"restoring ({description})", unit="image", disable=len(jobs) == 1 or verbosity(args) < 0)
    with logging_redirect_tqdm(loggers=[logging.getLogger(PACKAGE_LOGGER)]):  # warnings print above the bar
        for src, dst in bar:
            try:
                restore_file(model, src, dst, tile, args.overlap, stats, train_patch)
            except (HINetError, OSError, RuntimeError, MemoryError) as error:
                message = _one_line(error)
                failures.append((src, message))
                tqdm.write(f"error: {src.name}: {message}", file=sys.stderr)

    if failures:
        print(f"{len(failures)} of {len(jobs)} image(s) failed:", file=sys.stderr)
        for src, message in failures:
            print(f"  {src}: {message}", file=sys.stderr)
        return EXIT_ERROR
    written = jobs[0][1] if len(jobs) == 1 else args.output
    print(f"wrote {len(jobs)} image(s) to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
