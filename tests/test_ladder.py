"""The budget ladder's planner: learning rates borrowed from another grid, seed-major order, the "best
other" variant chosen on validation, shipped fp16 weights, and runs shared between grids by copying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hinet import sweep as sweep_module
from hinet.checkpoint import load_checkpoint
from hinet.sweep import RETRAIN_TO_SHIP, SHIPPED_WEIGHTS_FILE, plan, run_sweep


@pytest.fixture(autouse=True)
def _hermetic(small_sweep_world):
    pass


# Fake best validation PSNR per (variant, lr): makes every choice the planner must make known in advance.
FAKE_VAL = {
    ("hin", 1e-3): 30.0,
    ("hin", 3e-3): 31.0,
    ("none", 1e-3): 26.0,
    ("none", 3e-3): 25.0,
    ("batch", 1e-3): 28.0,
    ("batch", 3e-3): 27.0,
}


@pytest.fixture
def fake_validation(monkeypatch):
    real_train = sweep_module.train
    trained = []

    def scored_train(cfg, **kwargs):
        result = real_train(cfg, **kwargs)
        variant = cfg.run_name.split("__")[2]
        state_path = cfg.run_dir / "train_state.json"
        state = json.loads(state_path.read_text())
        state["best"] = {"psnr": FAKE_VAL[(variant, cfg.optimizer.lr)], "ssim": 0.5, "step": cfg.steps}
        state_path.write_text(json.dumps(state))
        trained.append(cfg.run_name)
        return result

    monkeypatch.setattr(sweep_module, "train", scored_train)
    return trained


def write_grid(path: Path, template: Path, **changes) -> Path:
    grid = yaml.safe_load(template.read_text())
    grid.update(changes)
    path.write_text(yaml.safe_dump(grid))
    return path


@pytest.fixture
def rung(grid_file, tmp_path):
    variants = [
        {"name": "hin", "variant": "tiny_half_instance"},
        {"name": "none", "variant": "tiny_none"},
        {"name": "batch", "variant": "tiny_batch"},
    ]
    return write_grid(
        tmp_path / "rung_a.yaml",
        grid_file,
        ablation="rungA",
        seeds=[0, 1],
        variants=variants,
        ship_seeds=[0],
        lr_search={"lrs": [1e-3, 3e-3], "steps": 8, "seed": 0},
    )


def test_ladder_borrows_rates_orders_by_seed_ships_and_picks_the_best_other(
    rung,
    grid_file,
    tmp_path,
    fake_validation,
):
    results = tmp_path / "results"
    base = dict(yaml.safe_load(rung.read_text())["base"], steps=6)
    later = write_grid(
        tmp_path / "rung_b.yaml",
        grid_file,
        ablation="rungB",
        seeds=[0, 1],
        lr_from=str(rung),
        variants=[{"name": "hin", "variant": "tiny_half_instance"}],
        best_other={"from": str(rung), "exclude": ["hin"]},
        base=base,
    )
    pending = plan(later, results)
    assert all(r.lr_pending for r in pending)  # rung A has not searched yet
    assert [r.variant for r in pending] == ["hin", "best-other", "hin", "best-other"]
    assert pending[1].status().startswith("waiting") and pending[0].status().startswith("waiting")

    run_sweep([rung, later], results, echo=lambda line: None)
    runs_a = plan(rung, results)
    # seed by seed: every variant's seed 0 before any seed 1
    assert [r.name for r in runs_a] == [f"rungA__denoise__{v}__s{s}" for s in (0, 1) for v in ("hin", "none", "batch")]
    assert {r.variant: r.config.optimizer.lr for r in runs_a} == {"hin": 3e-3, "none": 1e-3, "batch": 1e-3}
    runs_b = plan(later, results)
    # the best other variant by mean validation PSNR of rung A (batch 28 > none 26), at rung A's rate for it
    assert [(r.variant, r.config.optimizer.lr, r.config.steps) for r in runs_b] == [
        ("hin", 3e-3, 6),
        ("batch", 1e-3, 6),
        ("hin", 3e-3, 6),
        ("batch", 1e-3, 6),
    ]
    assert [r.status() for r in runs_a + runs_b] == ["done"] * 10
    assert not any(name.startswith("lr-rungB") for name in fake_validation)  # rung B never searches

    shipped = [r for r in runs_a if (r.run_dir / SHIPPED_WEIGHTS_FILE).is_file()]
    assert [r.seed for r in shipped] == [0, 0, 0]
    assert not any((r.run_dir / SHIPPED_WEIGHTS_FILE).exists() for r in runs_b)  # rung B ships nothing
    with open(shipped[0].run_dir / SHIPPED_WEIGHTS_FILE, "rb") as handle:
        assert b"F16" in handle.read(4096)  # stored as float16
    fp16, metadata = load_checkpoint(shipped[0].run_dir / SHIPPED_WEIGHTS_FILE)
    fp32, _ = load_checkpoint(shipped[0].run_dir / "model.safetensors")
    for name, value in fp32.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(fp16.state_dict()[name], value, atol=1e-2, rtol=1e-2)
    assert metadata["ablation"] == "rungA" and metadata["trained"]

    # a fresh clone keeps the scores and the fp16 copy only: nothing to do; without the copy it is retrained
    hin0 = shipped[0]
    (hin0.run_dir / "model.safetensors").unlink()
    assert hin0.status() == "done"
    (hin0.run_dir / SHIPPED_WEIGHTS_FILE).unlink()
    assert hin0.status() == RETRAIN_TO_SHIP
    fake_validation.clear()
    run_sweep([rung], results, echo=lambda line: None)
    assert fake_validation == [hin0.name] and (hin0.run_dir / SHIPPED_WEIGHTS_FILE).is_file()


def test_a_run_shared_with_another_grid_is_copied_with_its_scores(
    rung,
    grid_file,
    tmp_path,
    fake_validation,
):
    results = tmp_path / "results"
    run_sweep([rung], results, echo=lambda line: None)
    for run in plan(rung, results):  # as on a fresh clone: scores kept, fp32 weights git-ignored
        (run.run_dir / "model.safetensors").unlink()
    knobs = write_grid(
        tmp_path / "knobs.yaml",
        grid_file,
        ablation="knobs",
        seeds=[0, 1],
        variants=[{"name": "hin", "variant": "tiny_half_instance", "lr_from": str(rung), "ship": False}],
    )
    fake_validation.clear()
    lines = []
    run_sweep([knobs], results, echo=lines.append)
    assert fake_validation == []  # nothing trained
    assert sum("the same training as rungA__denoise__hin__s" in line for line in lines) == 2
    for run in plan(knobs, results):
        assert run.status() == "done"
        info = json.loads((run.run_dir / "sweep.json").read_text())
        assert (info["run"], info["ablation"], info["copied_from"]) == (
            run.name,
            "knobs",
            run.name.replace("knobs", "rungA"),
        )
        assert (run.run_dir / "eval.csv").read_text() == (
            results / "runs" / info["copied_from"] / "eval.csv"
        ).read_text()
    assert not (plan(knobs, results)[0].run_dir / SHIPPED_WEIGHTS_FILE).exists()


def test_variant_training_overrides_merge_into_the_base(grid_file, tmp_path):
    grid = write_grid(
        tmp_path / "patch.yaml",
        grid_file,
        ablation="patch",
        variants=[
            {"name": "hin", "variant": "tiny_half_instance"},
            {"name": "hin_p64", "variant": "tiny_half_instance", "train": {"data": {"patch": 64, "batch": 1}}},
        ],
    )
    small, large = plan(grid, tmp_path / "results")
    assert (small.config.data.patch, small.config.data.batch) == (32, 2)
    assert (large.config.data.patch, large.config.data.batch) == (64, 1)
    assert large.config.data.dead_leaves == small.config.data.dead_leaves  # the rest of `data` is kept


def test_a_stopped_run_without_its_checkpoint_starts_over(grid_file, tmp_path, fake_validation):
    """A fresh checkout holds a stopped run's state file and log (git keeps them) but not its weights."""
    from hinet.runs import MODEL_FILE, STATE_TENSORS_FILE
    from hinet.sweep import RESTART

    results = tmp_path / "results"
    grid = write_grid(tmp_path / "one.yaml", grid_file, variants=[{"name": "hin", "variant": "tiny_half_instance"}])
    (run,) = plan(grid, results)
    run_sweep([grid], results, echo=lambda line: None)
    state_path = run.run_dir / "train_state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps(dict(state, step=4)))  # as if stopped at step 4 of 8
    assert run.status() == "resume"
    (run.run_dir / MODEL_FILE).unlink()
    (run.run_dir / STATE_TENSORS_FILE).unlink()
    assert run.status() == RESTART
    fake_validation.clear()
    report = run_sweep([grid], results, echo=lambda line: None)
    assert fake_validation == [run.name] and run.status() == "done" and "error" not in report[-1]
