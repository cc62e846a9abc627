"""Each model's default test-time statistics, chosen on validation and recorded in its checkpoint.

    choice = choose_stats(model, "denoise", validation_pairs("denoise"), train_patch=64)
    choice.chosen            # "whole", "tiled" or "local"
    choice.metadata()        # what scripts/ship_model.py writes into the shipped file

Instance-type norms (IN, HIN, LN) compute statistics from their input, so a model trained on small crops
scores differently on a whole image than in tiles of its training patch or with local (TLC) windows. Batch
norm (running statistics) and norm-free models compute the same thing under `whole` and `local`; `tiled`
only adds tile borders and blending (a small difference, not a statistics effect), so they use one
whole-image pass without measuring. Which one is best depends on the
model (task, budget, training patch), so it is measured per model on the held-out validation photos, never
on the test set. Tiles and windows cost time: within `TIE_DB` the faster protocol wins, and the measured
seconds are recorded beside the scores so the app and the CLI can say what the choice costs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors import safe_open

from hinet import data, photos
from hinet.checkpoint import load_checkpoint, save_checkpoint
from hinet.errors import HINetError
from hinet.inference import STATS_PROTOCOLS, restore, training_patch
from hinet.local_stats import uses_input_statistics
from hinet.logs import add_verbosity_flags, configure_logging, verbosity
from hinet.metrics import psnr
from hinet.model import HINet
from hinet.tasks import get_task

VALIDATION_CROP = 384  # px: six 64-px training patches across, so whole-image statistics differ from a patch's
TIE_DB = 0.02  # PSNR differences up to this count as a tie (then the faster protocol wins)
VALIDATION_SEED = 0xD5  # the degradation of the validation crops, fixed so every model sees the same inputs
DEFAULT_STATS = "default"  # a choice meaning "each model's recorded default" (CLI --stats, the app)
METADATA_KEY = "inference_stats"  # the chosen protocol, in a checkpoint's metadata
SCORES_KEY = "inference_stats_scores"  # {protocol: {"psnr", "seconds"}} measured on validation
REASON_KEY = "inference_stats_reason"
NO_INPUT_STATISTICS = (
    "no norm of this model computes statistics from its input: local is the same computation as whole, and "
    "tiled differs only by tile borders and blending, so one whole-image pass is used"
)


@dataclass(frozen=True)
class StatsChoice:
    chosen: str
    reason: str
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # protocol -> {"psnr", "seconds"}

    def metadata(self) -> dict:
        return {METADATA_KEY: self.chosen, SCORES_KEY: self.scores, REASON_KEY: self.reason}


def validation_pairs(task: str, size: int = VALIDATION_CROP) -> list[tuple[np.ndarray, np.ndarray]]:
    """(degraded, clean) crops of the held-out validation photos at the task's default strength. Needs the
    photo packages (`hinet.photos`); raises ConfigError naming them when they are missing."""
    strength = get_task(task).validate({})
    pairs = []
    for index, (_, clean) in enumerate(photos.validation_crops(size)):
        lq = data.degrade(clean, task, np.random.default_rng([VALIDATION_SEED, index]), kernel=None, **strength)
        pairs.append((np.clip(lq, 0.0, 1.0).astype(np.float32), clean))
    return pairs


def choose_stats(
    model: HINet, task: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]], train_patch: int, tie_db: float = TIE_DB
) -> StatsChoice:
    """Score every protocol on `pairs` (mean PSNR under the task's metric protocol, total seconds) and pick
    the best; within `tie_db` of the best, the fastest. A model whose norms use no input statistics gets
    "whole" without running the others."""
    if not uses_input_statistics(model):
        return StatsChoice("whole", NO_INPUT_STATISTICS)
    protocol = get_task(task).protocol
    scores = {}
    for stats in STATS_PROTOCOLS:
        started, values = time.perf_counter(), []
        for lq, gt in pairs:
            values.append(psnr(restore(model, lq, stats=stats, train_patch=train_patch), gt, protocol))
        scores[stats] = {"psnr": round(float(np.mean(values)), 4), "seconds": round(time.perf_counter() - started, 3)}
    best = max(score["psnr"] for score in scores.values())
    tied = [stats for stats, score in scores.items() if score["psnr"] >= best - tie_db]
    chosen = min(tied, key=lambda stats: scores[stats]["seconds"])
    others = ", ".join(
        f"{stats} {score['psnr'] - scores[chosen]['psnr']:+.2f} dB"
        for stats, score in scores.items()
        if stats != chosen
    )
    reason = (
        f"best on {len(pairs)} validation crops of {pairs[0][1].shape[1]}x{pairs[0][1].shape[0]} px "
        f"(others: {others}; ties within {tie_db:g} dB go to the fastest)"
    )
    return StatsChoice(chosen, reason, scores)


def recorded_stats(metadata: dict) -> tuple[str, str]:
    """(protocol, why) a checkpoint's metadata names as its default; ("whole", ...) when it names none."""
    chosen = metadata.get(METADATA_KEY)
    if chosen not in STATS_PROTOCOLS:
        return "whole", "no default recorded in the checkpoint: whole image"
    reason = str(metadata.get(REASON_KEY, "chosen on validation"))
    scores = metadata.get(SCORES_KEY)
    if isinstance(scores, str):  # tolerate a JSON string written by hand
        scores = json.loads(scores)
    if isinstance(scores, dict) and chosen in scores and "whole" in scores and chosen != "whole":
        ratio = scores[chosen]["seconds"] / max(scores["whole"]["seconds"], 1e-9)
        reason += f"; about {ratio:.1f}x the time of one whole-image pass"
    return chosen, f"this model's default, {reason}"


def main(argv: list[str] | None = None) -> int:
    """`python -m hinet.stats_choice results/models/deblur.safetensors ... [--write]`: measure each file's
    default on validation and (with --write) record it in the file, weights unchanged."""
    parser = argparse.ArgumentParser(
        prog="python -m hinet.stats_choice", description=(main.__doc__ or "").split(":")[0]
    )
    parser.add_argument("checkpoints", nargs="+", help="hinet .safetensors files")
    parser.add_argument("--write", action="store_true", help="record the choice in each file's metadata")
    add_verbosity_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(verbosity(args))
    try:
        for path in args.checkpoints:
            model, metadata = load_checkpoint(path)
            task = metadata.get("task")
            if task is None:
                raise HINetError(f"{path} does not name its task in its metadata")
            choice = choose_stats(model.eval(), task, validation_pairs(task), training_patch(metadata)[0])
            scores = "; ".join(f"{k} {v['psnr']:.2f} dB {v['seconds']:.1f} s" for k, v in choice.scores.items())
            print(f"{path}: {choice.chosen} ({choice.reason}){f' [{scores}]' if scores else ''}")
            if args.write:
                with safe_open(path, "pt") as handle:  # keep the file's precision (shipped files are fp16)
                    half = handle.get_slice(next(iter(handle.keys()))).get_dtype() == "F16"
                kept = {k: v for k, v in metadata.items() if k != "config"}
                save_checkpoint(path, model, {**kept, **choice.metadata()}, dtype=torch.float16 if half else None)
                print(f"  recorded in {path}")
    except (HINetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


__all__ = [
    "DEFAULT_STATS",
    "METADATA_KEY",
    "StatsChoice",
    "choose_stats",
    "recorded_stats",
    "validation_pairs",
]


if __name__ == "__main__":
    raise SystemExit(main())
