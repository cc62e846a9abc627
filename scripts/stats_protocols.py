"""Score models under every test-time statistics protocol and variants of the local-window rule.

    python scripts/stats_protocols.py [--runs "norm__*__hin__s*"] [--results results]

For every shipped model (`results/models/*.safetensors`) and every run folder of `results/runs` matching
`--runs` that still has its weights, on the test set (sporco, degradation seed 0, the task's default level
for shipped models and the run's own level for runs), this computes PSNR/SSIM under:

- `whole`: one pass, global statistics;
- `tiled`: tiles of the training patch, overlap a quarter of it, blended;
- `local` with TLC's rule (window 1.5x the training map, replicate edges) and three variants of the rule:
  window 1x and 3x the training map, and windows clipped at the border ("shrink").

It writes `<results>/stats_protocols.csv` (one row per model x rule x image) and prints the means, so the
README's figures on local statistics come from one rerunnable command. Every shipped model is scored
afresh (a replaced file must not keep its predecessor's rows); a run folder of the previous CSV that is
not scored this time keeps its rows, with a message saying so, rather than dropping out of the table:
one that `--runs` does not match (so rescoring the shipped models alone leaves the runs' rows be), or one
whose weights are no longer on disk (run weights are git-ignored: a fresh clone has none). A run whose
folder is gone drops out. Batch-norm and no-norm models are
scored too: nothing in them computes statistics from the input, so `local` must equal `whole` exactly (a
check of the code); `tiled` may still differ a little, because each tile loses the context beyond its
border (blending hides most of it).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import sys
from pathlib import Path

from hinet import data
from hinet.checkpoint import load_checkpoint
from hinet.errors import HINetError
from hinet.evaluate import MODEL_METHOD, evaluate_model
from hinet.inference import training_patch
from hinet.io import atomic_write_bytes
from hinet.runs import MODEL_FILE, results_runs_dir, shipped_models_dir

# (label, stats protocol, local_factor, local_edge): the rules compared, TLC's first among the local ones.
RULES = (
    ("whole", "whole", 1.5, "replicate"),
    ("tiled", "tiled", 1.5, "replicate"),
    ("local", "local", 1.5, "replicate"),
    ("local x1", "local", 1.0, "replicate"),
    ("local x3", "local", 3.0, "replicate"),
    ("local shrink", "local", 1.5, "shrink"),
)
COLUMNS = ("model", "task", "level", "norm", "train_patch", "patch_assumed", "rule", "image", "psnr", "ssim")


def model_files(results: Path, runs_pattern: str | None) -> list[tuple[str, Path]]:
    files = [(f"models/{p.stem}", p) for p in sorted(shipped_models_dir(results).glob("*.safetensors"))]
    if runs_pattern:
        files += [
            (f"runs/{p.parent.name}", p) for p in sorted(results_runs_dir(results).glob(f"{runs_pattern}/{MODEL_FILE}"))
        ]
    return files


def rows_of_runs_not_rescored(out: Path, results: Path, scored: set[str]) -> list[dict]:
    """The previous CSV's rows of run folders still in `results` that were not scored now (not matched by
    `--runs`, or without weights); a run folder that is gone, or a shipped model, is never carried."""
    if not out.is_file():
        return []
    with out.open(newline="") as handle:
        previous = list(csv.DictReader(handle))
    return [
        {column: row.get(column, "") for column in COLUMNS}
        for row in previous
        if row["model"].startswith("runs/")
        and row["model"] not in scored
        and (results_runs_dir(results) / row["model"][5:]).is_dir()
    ]


def score(name: str, path: Path, images) -> list[dict]:
    model, metadata = load_checkpoint(path)
    task = metadata.get("task")
    if task not in data.TASKS:
        raise HINetError(f"{path} records no task")
    strength = metadata.get("strength") if name.startswith("runs/") else None
    level = data.validate_strength(task, **(strength or {}))
    patch, note = training_patch(metadata)
    rows = []
    for label, stats, factor, edge in RULES:
        scored = evaluate_model(
            model, task, level, images=images, stats=stats, train_patch=patch, local_factor=factor, local_edge=edge
        )
        for row in scored:
            if row["method"] == MODEL_METHOD:
                rows.append(
                    {
                        "model": name,
                        "task": task,
                        "level": data.format_level(level),
                        "norm": model.config.norm,
                        "train_patch": patch,
                        "patch_assumed": note is not None,
                        "rule": label,
                        "image": row["image"],
                        "psnr": round(row["psnr"], 4),
                        "ssim": round(row["ssim"], 6),
                    }
                )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--runs", default=None, help="also score run folders matching this glob (weights needed)")
    args = parser.parse_args(argv)
    results = Path(args.results)
    images = data.test_images()
    rows = []
    for name, path in model_files(results, args.runs):
        try:
            model_rows = score(name, path, images)
        except HINetError as error:
            print(f"skipped {name}: {error}", file=sys.stderr)
            continue
        rows += model_rows
        means = {rule: sum(r["psnr"] for r in model_rows if r["rule"] == rule) / len(images) for rule, *_ in RULES}
        print(f"{name:40s} " + "  ".join(f"{rule} {value:.2f}" for rule, value in means.items()), flush=True)
    out = results / "stats_protocols.csv"
    kept = rows_of_runs_not_rescored(out, results, {row["model"] for row in rows})
    for name in dict.fromkeys(row["model"] for row in kept):
        reason = (
            "not matched by --runs" if not args.runs or not fnmatch.fnmatchcase(name[5:], args.runs) else "no weights"
        )
        print(f"kept the previous rows of {name} ({reason})", file=sys.stderr)
    rows += kept
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(out, buffer.getvalue().encode())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
