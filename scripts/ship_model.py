"""Ship a trained run as the app's default model for its task.

    python scripts/ship_model.py results/defaults/denoise
    python -m hinet.evaluate results/models/denoise.safetensors --task-levels --protocol all --baselines \
        --out-csv results/eval/denoise.csv
    python scripts/ship_model.py results/defaults/denoise --eval-csv results/eval/denoise.csv

Copies the run's best checkpoint (selected on the validation split, never on the test set) to
`results/models/<task>.safetensors` in fp16; `--name denoise_hin` ships it beside the default instead (the
restore command uses `<task>.safetensors`; the app opens on it and lists every other file as a variant).
With `--eval-csv` (an evaluation of that shipped file) it also records the test-set PSNR/SSIM of the
`hinet` rows under the model's default test-time statistics (whole-image rows when the evaluation has
none under it), so the app can show them. It also records the model's default test-time statistics (whole,
tiled or local), chosen on the held-out validation photos (`hinet.stats_choice`; needs the photo packages,
`--no-choose-stats` skips it and the model defaults to whole-image statistics). fp16 rounding is deterministic, so the file evaluated and the file
re-written hold the same weights.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from hinet.checkpoint import load_checkpoint, save_checkpoint
from hinet.data import format_level
from hinet.errors import HINetError
from hinet.evaluate import MODEL_METHOD
from hinet.inference import training_patch
from hinet.runs import BEST_FILE, MODEL_FILE, recorded_run_path, shipped_models_dir
from hinet.stats_choice import choose_stats, recorded_stats, validation_pairs
from hinet.tasks import TASKS


def read_mean_row(eval_csv: Path, stats: str = "whole", level: str | None = None) -> dict:
    """The model's mean row under test-time statistics `stats` (what the app runs by default), at `level`
    (the task's default level, e.g. "sigma=25") when the evaluation has it, else its first level;
    whole-image rows (or rows written before protocols existed) when it has none under `stats`."""
    with open(eval_csv, newline="") as handle:
        means = [row for row in csv.DictReader(handle) if row["method"] == MODEL_METHOD and row["image"] == "mean"]
    at_level = [row for row in means if row.get("strength") == level]
    for wanted in (stats, "whole"):
        for row in at_level + means:
            if (row.get("stats") or "whole") == wanted:
                return dict(row, stats=wanted)
    raise HINetError(f"{eval_csv} has no mean row for method {MODEL_METHOD!r}")


def check_beats_its_start(metadata: dict) -> None:
    """A run that started from other weights (`init_weights`) ships only if its best validation PSNR beats
    theirs (the same task's validation pairs): shipping it could otherwise replace a better model."""
    start, best = metadata.get("init_val_psnr"), metadata.get("val_psnr")
    if start is not None and (best is None or float(best) <= float(start)):
        shown = "none" if best is None else f"{float(best):.2f} dB"
        raise HINetError(
            f"this run's best validation PSNR ({shown}) does not beat the {float(start):.2f} dB of the weights it "
            f"started from ({metadata.get('init_weights')}, run {metadata.get('init_source_run')}); nothing shipped"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--eval-csv", type=Path, help="an evaluation of the shipped file, to record its scores")
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument(
        "--name",
        help="file name under results/models, without .safetensors; must start "
        "with the task (default: the task, i.e. the task's default model)",
    )
    parser.add_argument(
        "--no-choose-stats",
        action="store_true",
        help="do not measure the default test-time statistics on validation (the model then runs whole-image)",
    )
    args = parser.parse_args(argv)
    try:
        source = args.run_dir / BEST_FILE
        if not source.exists():
            source = args.run_dir / MODEL_FILE
        model, metadata = load_checkpoint(source)
        task = metadata["task"]
        check_beats_its_start(metadata)
        metadata = {k: v for k, v in metadata.items() if k != "config"}
        metadata.update(source_run=recorded_run_path(args.run_dir))
        if not args.no_choose_stats:
            choice = choose_stats(model.eval(), task, validation_pairs(task), training_patch(metadata)[0])
            metadata.update(choice.metadata())
            print(f"test-time statistics: {choice.chosen} ({choice.reason})")
        if args.eval_csv is not None:
            level = format_level(TASKS[task].defaults)
            mean = read_mean_row(args.eval_csv, recorded_stats(metadata)[0], level)
            metadata.update(
                test_psnr=round(float(mean["psnr"]), 3),
                test_ssim=round(float(mean["ssim"]), 4),
                test_strength=mean["strength"],
                test_protocol=mean["protocol"],
                test_stats=mean["stats"],
                test_images="sporco data folder (kodim23, monarch, sail, tulips, barbara)",
            )
        name = args.name or task
        if not (name == task or name.startswith(f"{task}_")):
            raise HINetError(f"--name {name!r} must be {task!r} or start with '{task}_' (the run's task)")
        target = save_checkpoint(
            shipped_models_dir(args.results) / f"{name}.safetensors", model, metadata, dtype=torch.float16
        )
    except (HINetError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"wrote {target} ({target.stat().st_size / 2**20:.1f} MiB); test PSNR: {metadata.get('test_psnr', 'not recorded')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
