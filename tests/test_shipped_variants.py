"""The ablation variants shipped as fp16 weights (`<run>/weights_fp16.safetensors`, grids' `ship_seeds`):
every one on disk loads with complete metadata, and a run that has only that file (a fresh clone) is listed,
opened from the ablation tab in the restore and feature tabs, and restores through the served app."""

import json
import shutil

import numpy as np
import pytest

from app_harness import serve_tiny_app
from hinet.checkpoint import load_checkpoint, save_checkpoint
from hinet.registry import create_model
from hinet.runs import EVAL_FILE, RESULTS_DIR, RUN_INFO_FILE, SHIPPED_WEIGHTS_FILE, results_runs_dir

SHIPPED = sorted(results_runs_dir(RESULTS_DIR).glob(f"*/{SHIPPED_WEIGHTS_FILE}"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_every_shipped_variant_loads_with_complete_metadata(path):
    model, metadata = load_checkpoint(path)
    run = path.parent
    info = json.loads((run / RUN_INFO_FILE).read_text())
    assert metadata["trained"] and metadata["task"] == info["task"] and metadata["ablation"] == info["ablation"]
    assert metadata["steps"] == info["steps"] and metadata["train_patch"] == info["train_patch"]
    assert {"device", "precision", "data_sources", "seed"} <= set(metadata), sorted(metadata)
    assert model.config.norm == info["norm"] and (run / EVAL_FILE).is_file()
    assert path.stat().st_size < 3 * 2**20  # fp16: about 2.7 MB for small_* variants


def test_ship_seeds_cover_seed_0_of_every_3k_variant_that_finished():
    from hinet.sweep import LADDER_GRIDS, plan

    for grid in LADDER_GRIDS:
        for run in plan(grid):
            if run.ship and run.status() == "done":
                assert (run.run_dir / SHIPPED_WEIGHTS_FILE).is_file(), run.name


@pytest.fixture
def fresh_clone_results(tmp_path):
    """A results folder as a fresh clone has it: one ablation run with scores and fp16 weights only."""
    results = tmp_path / "results"
    run = results / "runs" / "norm3k__denoise__hin__s0"
    run.mkdir(parents=True)
    model = create_model("tiny_half_instance")
    metadata = {"task": "denoise", "trained": True, "steps": 3000, "train_patch": 64}
    save_checkpoint(run / SHIPPED_WEIGHTS_FILE, model, metadata=metadata, dtype=__import__("torch").float16)
    row = dict(
        run=run.name,
        ablation="norm3k",
        variant="hin",
        task="denoise",
        level="sigma=25",
        seed=0,
        norm="half_instance",
        norm_ratio=0.5,
        hin_position_left=0,
        hin_position_right=2,
        norm_in_decoder=False,
        norm_affine=True,
        wf=8,
        depth=3,
        steps=3000,
        lr=0.003,
        train_seconds=1.0,
        params=1,
        macs=1,
        latency_ms=1.0,
        device="cpu",
        protocol="whole",
        image="kodim23",
        psnr=31.25,
        ssim=0.9,
    )
    import pandas as pd

    pd.DataFrame([row]).to_csv(results / "ablation.csv", index=False)
    return results, run


def test_a_fresh_clone_run_opens_in_the_restore_and_feature_tabs_and_restores(fresh_clone_results, tmp_path):
    from gradio_client import Client, handle_file

    from app.ablation_tab import open_in_features, open_in_restore, render
    from app.models import ModelStore
    from hinet.image import save_image

    results, run = fresh_clone_results
    store = ModelStore(
        results_dir=results,
        runs_dir=tmp_path / "user_runs",
        registry_prefix="tiny_",
        default_untrained="tiny_half_instance",
    )
    entry_id = f"results/runs/{run.name}"
    entry = store.find_entry(entry_id)
    assert entry.trained and entry.path.name == SHIPPED_WEIGHTS_FILE and entry.test_psnr == pytest.approx(31.25)
    open_choices = render(
        store, str(results / "ablation.csv"), "denoise", "sigma=25", "norm3k", ["hin"], [0], "hin", protocol="whole"
    )[-1]
    assert entry_id in [value for _, value in open_choices["choices"]]
    _, variants, pending, tabs = open_in_restore(store, entry_id, "denoise")
    assert variants["value"] == [entry_id] and pending is None and tabs.selected == "restore"
    features, tabs = open_in_features(store, entry_id)
    assert features["value"] == entry_id and tabs.selected == "features"

    clean = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    image = save_image(tmp_path / "noisy.png", np.clip(clean + 0.1, 0, 1))
    truth = save_image(tmp_path / "clean.png", clean)
    with serve_tiny_app(store) as url:
        output = Client(url, verbose=False).predict(
            image=handle_file(str(image)),
            example=None,
            ground_truth=handle_file(str(truth)),
            variants=[entry_id],
            task="denoise",
            degrade_first=False,
            api_name="/restore",
        )
    rows = output[3]["data"]  # the metrics table: the input, then the run, scored against the ground truth
    assert any(run.name in str(row[0]) for row in rows), rows
    shutil.rmtree(run)  # the run is gone: a clear error, not a stack trace
    with pytest.raises(Exception, match="not available any more|unknown model"):
        ModelStore(results_dir=results, runs_dir=tmp_path / "user_runs").find_entry(entry_id)


def test_results_folder_stays_within_its_100_mib_budget():
    """What a clone of the repository holds under results/ (fp32 state that a stop carries to the next
    session through git is transient and left out: scripts/carry_state.py releases it)."""
    import subprocess

    from hinet.runs import BEST_FILE, MODEL_FILE, PROJECT_ROOT, STATE_TENSORS_FILE

    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", "results"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: the tracked files of results/ are unknown")
    carried = (MODEL_FILE, STATE_TENSORS_FILE, BEST_FILE)
    paths = [PROJECT_ROOT / name for name in listed.stdout.split("\0") if name]
    sizes = [path.stat().st_size for path in paths if path.is_file() and path.name.split(".part")[0] not in carried]
    assert len(sizes) > 10 and sum(sizes) <= 100 * 2**20, f"{sum(sizes) / 2**20:.1f} MiB under results/"
