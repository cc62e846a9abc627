"""The classical baselines on a training config's own validation pairs: the level its curve has to clear.

    python scripts/validation_baselines.py configs/default_base.yaml --set task=denoise
    python scripts/validation_baselines.py configs/default_deblur.yaml

Builds exactly the validation pairs the trainer scores for the config (`prepare_training_data`: the held-out
photo crops, degraded at the config's validation strength with the trainer's fixed seeds), runs the degraded
input and each classical baseline of the task (`hinet.tasks`: BM3D and NL-means with the true sigma for
denoising, Richardson-Lucy with the true kernel for deblurring, a 5x5 median for deraining), scores them with
the task's protocol as the trainer's validation does, and writes one row per method to
`results/defaults/validation_baselines.csv`, keyed by task, level and the pairs' fingerprint
(`hinet.training_data.validation_id`: source, crop size and images; rows with other keys are kept). The results page draws these
levels into the defaults' learning curves: a curve flattening under the BM3D line will not meet the bar.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

from hinet.config import load_config
from hinet.data import format_level
from hinet.errors import HINetError
from hinet.evaluate import BASELINES
from hinet.metrics import default_protocol, evaluate_pair
from hinet.runs import validation_baselines_csv
from hinet.tasks import get_task
from hinet.training_data import prepare_training_data, validation_id

VALIDATION_BASELINES_CSV = validation_baselines_csv()
COLUMNS = ("task", "level", "validation", "val_size", "method", "val_psnr", "val_ssim", "pairs", "config")
KEY = ("task", "level", "validation")  # `validation`: hinet.training_data.validation_id of the pairs
INPUT_METHOD = "input"


def score_config(config_path: Path, overrides: list[str]) -> list[dict]:
    cfg = load_config(config_path, overrides)
    prepared = prepare_training_data(cfg, cfg.model_config().size_multiple)
    validation = prepared.val_pairs
    strength = cfg.resolved_strength()
    protocol = default_protocol(cfg.task)
    methods = {INPUT_METHOD: lambda lq: np.clip(lq, 0, 1)}
    methods.update({name: (lambda lq, run=BASELINES[name]: run(lq, strength)) for name in get_task(cfg.task).baselines})
    rows = []
    for method, run in methods.items():
        scores = [evaluate_pair(run(lq), gt, protocol) for lq, gt in validation]
        rows.append(
            {
                "config": " ".join([config_path.as_posix(), *(f"--set {o}" for o in overrides)]),
                "task": cfg.task,
                "level": format_level(strength),
                "validation": validation_id(prepared.sources["validation"]),
                "val_size": cfg.data.val_size,
                "method": method,
                "val_psnr": round(float(np.mean([s["psnr"] for s in scores])), 4),
                "val_ssim": round(float(np.mean([s["ssim"] for s in scores])), 4),
                "pairs": len(validation),
            }
        )
    return rows


def read_rows(path: Path = VALIDATION_BASELINES_CSV) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", type=Path, help="training configs, e.g. configs/default_denoise.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=VALIDATION_BASELINES_CSV)
    args = parser.parse_args(argv)
    try:
        new = [row for path in args.configs for row in score_config(path, args.overrides)]
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    replaced = {tuple(str(row[k]) for k in KEY) for row in new}
    rows = [row for row in read_rows(args.out) if tuple(row[k] for k in KEY) not in replaced] + new
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: (row["task"], row["level"], row["method"])))
    for row in new:
        print(
            f"{row['task']} {row['level']}: {row['method']:16s} {row['val_psnr']} dB  SSIM {row['val_ssim']}  ({row['pairs']} pairs)"
        )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
