"""scripts/stats_protocols.py: shipped models scored afresh, runs not rescored keep their earlier rows."""

import csv
import importlib.util

import numpy as np
import torch

from hinet import data
from hinet.checkpoint import save_checkpoint
from hinet.registry import create_model
from hinet.runs import MODEL_FILE, PROJECT_ROOT

spec = importlib.util.spec_from_file_location("stats_protocols", PROJECT_ROOT / "scripts" / "stats_protocols.py")
stats_protocols = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stats_protocols)


def read_rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_rerun_rescores_shipped_models_and_keeps_runs_whose_weights_are_gone(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = {"a": rng.random((32, 48, 3)).astype(np.float32), "b": rng.random((40, 32, 3)).astype(np.float32)}
    monkeypatch.setattr(data, "test_images", lambda: images)
    torch.manual_seed(0)
    model = create_model("tiny_half_instance").eval()
    metadata = {"task": "denoise", "trained": "true", "train_patch": 16}
    save_checkpoint(tmp_path / "models" / "denoise.safetensors", model, metadata=metadata)
    runs = tmp_path / "runs"
    save_checkpoint(
        runs / "norm__denoise__hin__s0" / MODEL_FILE, model, metadata={**metadata, "strength": {"sigma": 25}}
    )
    (runs / "norm__denoise__hin__s1").mkdir()  # its weights are gone: only its folder is left
    out = tmp_path / "stats_protocols.csv"
    stale = {column: "" for column in stats_protocols.COLUMNS}
    previous = [
        {**stale, "model": "models/denoise", "rule": "whole", "image": "a", "psnr": "99"},  # a replaced file
        {**stale, "model": "models/jpeg_old", "rule": "whole", "image": "a", "psnr": "98"},  # no longer shipped
        {**stale, "model": "runs/norm__denoise__hin__s1", "rule": "whole", "image": "a", "psnr": "27.5"},
        {**stale, "model": "runs/norm__gone__hin__s0", "rule": "whole", "image": "a", "psnr": "26"},  # no folder
        {**stale, "model": "runs/other__denoise__s0", "rule": "whole", "image": "a", "psnr": "25"},  # not matched
    ]
    (runs / "other__denoise__s0").mkdir()
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=stats_protocols.COLUMNS)
        writer.writeheader()
        writer.writerows(previous)

    assert stats_protocols.main(["--results", str(tmp_path), "--runs", "norm__*__hin__s*"]) == 0

    rows = read_rows(out)
    by_model = {}
    for row in rows:
        by_model.setdefault(row["model"], []).append(row)
    assert set(by_model) == {
        "models/denoise",
        "runs/norm__denoise__hin__s0",
        "runs/norm__denoise__hin__s1",
        "runs/other__denoise__s0",
    }
    scored = len(stats_protocols.RULES) * len(images)
    assert len(by_model["models/denoise"]) == len(by_model["runs/norm__denoise__hin__s0"]) == scored
    assert "99" not in {row["psnr"] for row in by_model["models/denoise"]}  # scored afresh
    assert [row["psnr"] for row in by_model["runs/norm__denoise__hin__s1"]] == ["27.5"]  # kept as it was
    assert [row["psnr"] for row in by_model["runs/other__denoise__s0"]] == ["25"]  # not asked for: left be

    # rescoring the shipped models alone keeps every run's rows, the ones just scored included
    runs_before = [row for row in rows if row["model"].startswith("runs/")]
    assert stats_protocols.main(["--results", str(tmp_path)]) == 0
    assert [row for row in read_rows(out) if row["model"].startswith("runs/")] == runs_before
