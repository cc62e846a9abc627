"""The restore tab's first view (which models, computed once, recomputed when a model file changes) and the
CSV files every table offers, without a server (tiny models, small images)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import torch

from app import exports, restore_logic, restore_tab
from app.models import ModelStore
from app.restore_logic import FirstViews, first_view_variants, metrics_records, metrics_table
from hinet.checkpoint import save_checkpoint
from hinet.registry import create_model


def _save(results, name: str, variant: str, trained: bool = True, task: str = "denoise", psnr: float = 25.0):
    torch.manual_seed(0)
    path = results / "models" / f"{name}.safetensors"
    save_checkpoint(
        path, create_model(variant).eval(), metadata={"task": task, "trained": str(trained).lower(), "test_psnr": psnr}
    )
    return path


def _store(tmp_path) -> ModelStore:
    return ModelStore(
        results_dir=tmp_path / "results",
        runs_dir=tmp_path / "runs",
        registry_prefix="tiny_",
        default_untrained="tiny_half_instance",
    )


@pytest.fixture
def shipped_like(tmp_path):
    """A results folder laid out like the shipped one: a batch-norm default and its HIN comparison."""
    results = tmp_path / "results"
    _save(results, "denoise", "tiny_batch", psnr=30.0)
    _save(results, "denoise_hin", "tiny_half_instance", psnr=29.0)
    _save(results, "deblur", "tiny_half_instance", task="deblur")
    return _store(tmp_path)


def test_the_first_view_compares_the_task_default_with_a_hin_model(shipped_like):
    assert first_view_variants(shipped_like, "denoise") == ("results/models/denoise", "results/models/denoise_hin")


def test_a_hin_default_is_compared_with_another_norm_and_a_lone_or_untrained_default_shows_alone(tmp_path):
    results = tmp_path / "results"
    _save(results, "denoise", "tiny_half_instance", psnr=30.0)
    store = _store(tmp_path)
    assert first_view_variants(store, "denoise") == ("results/models/denoise",)  # nothing else trained
    _save(results, "denoise_bn", "tiny_batch", psnr=28.0)
    _save(results, "denoise_untrained", "tiny_layer", trained=False)
    assert first_view_variants(store, "denoise") == ("results/models/denoise", "results/models/denoise_bn")
    empty = _store(tmp_path / "nothing")
    assert first_view_variants(empty, "denoise") == ("registry/tiny_half_instance",)


def test_the_first_view_is_computed_once_and_again_when_a_model_file_changes(shipped_like, monkeypatch):
    calls = []
    run = restore_logic.run_restore

    def counting(request, *args, **kwargs):
        calls.append(request)
        return run(request, *args, **kwargs)

    monkeypatch.setattr(restore_logic, "run_restore", counting)
    views = FirstViews(size=2)
    first = views.get(shipped_like, "denoise")
    assert views.get(shipped_like, "denoise") is first and len(calls) == 1
    request = calls[0]
    assert request.degrade_first and request.seed == 0 and request.image_path.endswith("astronaut.png")
    assert [out.entry_id for out in first.outputs] == ["results/models/denoise", "results/models/denoise_hin"]
    table = metrics_table(first)
    assert table["variant"].iloc[0] == "input (no restoration)" and table["PSNR (dB)"].notna().all()
    # A retrained model: a newer file, a new first view.
    path = shipped_like.results_dir / "models" / "denoise_hin.safetensors"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert views.get(shipped_like, "denoise") is not first and len(calls) == 2


def test_the_page_load_event_fills_the_tab_and_each_page_gets_its_own_files(shipped_like, monkeypatch):
    monkeypatch.setattr(restore_tab, "FIRST_VIEWS", FirstViews())
    first = restore_tab.first_view(shipped_like)
    example, degrade_first, variants, state, slider, overview_path, grid, table, downloads, text, pixels = first
    assert (example, degrade_first) == ("astronaut", True)
    assert variants["value"] == ["results/models/denoise", "results/models/denoise_hin"]
    assert len(slider) == 2 and len(grid) == 4  # input, two variants, ground truth
    assert len(table) == 3 and "seed 0" in text and len(downloads) == 3
    assert pixels is not state["result"].input_pixels and np.array_equal(pixels, state["result"].input_pixels)
    second = restore_tab.first_view(shipped_like)
    assert second[3]["result"] is state["result"]  # computed once
    assert second[3]["download_dir"] != state["download_dir"]  # but every page has its own files
    restore_tab.delete_download_dir(state)
    assert os.path.exists(second[3]["download_dir"])
    restore_tab.delete_download_dir(second[3])


def test_no_first_view_leaves_the_form_as_it_was(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        from hinet.errors import ConfigError

        raise ConfigError("no model is available")

    monkeypatch.setattr(restore_tab.FIRST_VIEWS, "get", broken)
    outputs = restore_tab.first_view(_store(tmp_path))
    assert outputs == ({"__type__": "update"},) * 11  # gr.skip() for every output: nothing changes


def test_metrics_csv_holds_full_precision_and_what_produced_each_row(shipped_like, tmp_path):
    result = FirstViews().get(shipped_like, "denoise")
    records = metrics_records(result)
    shown = metrics_table(result)
    assert list(records["variant"]) == list(shown["variant"])
    assert np.allclose(records["psnr"].round(2), shown["PSNR (dB)"])
    assert set(records["task"]) == {"denoise"} and set(records["degradation"]) == {"sigma=25"}
    assert records["model id"].tolist()[1:] == ["results/models/denoise", "results/models/denoise_hin"]
    assert "uint8" in records["metric protocol"].iloc[0]
    assert records["test-time statistics"].iloc[1].startswith("whole")
    state = {
        "result": result,
        "download_dir": str(tmp_path / "session"),
        "example": "astronaut",
        "tiling": "whole image",
    }
    path, text = restore_tab.export_metrics(state)
    assert path.startswith(str(tmp_path / "session")) and path.endswith(".csv")
    assert pd.read_csv(path)["psnr"].tolist() == pytest.approx(records["psnr"].tolist())
    assert "`/restore`" in text and "example='astronaut'" in text and "denoise_sigma=25" in text
    assert restore_tab.export_metrics(None) == (None, "")


def test_the_api_call_names_an_upload_and_its_tiling(shipped_like):
    result = FirstViews().get(shipped_like, "denoise")
    request = restore_logic.RestoreRequest(
        task="denoise", variant_ids=("a",), image_path="x.png", gt_path="gt.png", tile=128, overlap=16
    )
    state = {"result": result, "example": None, "tiling": restore_tab.TILED}
    state["result"] = type(result)(**{**result.__dict__, "request": request})
    code = restore_tab.api_call(state)
    assert "image=handle_file('your image')" in code and "ground_truth=handle_file('its ground truth')" in code
    assert "tile_size=128" in code and "overlap=16" in code and "seed=" not in code
    compile(code, "api_call", "exec")  # valid Python


def test_exports_write_one_file_per_table_and_skip_empty_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "EXPORT_DIR", tmp_path)
    frame = pd.DataFrame({"variant": ["hin", "bn"], "psnr": [28.5, 28.1]})
    path = exports.export_csv(frame, "my table/1", folder=tmp_path)
    assert path == exports.export_csv(frame, "my table/1", folder=tmp_path)  # same content, same file
    assert os.path.basename(path).startswith("my-table-1_") and pd.read_csv(path).equals(frame)
    assert exports.export_csv(None, "x") is None and exports.export_csv(pd.DataFrame(), "x") is None
    event = exports.table_csv_event("shown")
    assert pd.read_csv(event(frame)).equals(frame) and event(frame).startswith(str(tmp_path))


def test_a_runs_log_is_offered_as_csv(tmp_path, monkeypatch):
    from app.train_tab import export_log

    monkeypatch.setattr(exports, "EXPORT_DIR", tmp_path / "exports")
    run = tmp_path / "my_run"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4, "val_psnr": 25.0}\n')
    frame = pd.read_csv(export_log(str(run)))
    assert frame["step"].tolist() == [1, 2] and frame["val_psnr"].iloc[1] == 25.0 and set(frame["run"]) == {"my_run"}
    assert export_log(None) is None and export_log(str(tmp_path / "no_run")) is None


def test_feature_statistics_csv_is_the_data_of_the_statistics_figure(tmp_path):
    from app import feature_logic

    store = _store(tmp_path)
    source = feature_logic.example_source("camera")
    view = feature_logic.render_block(store, "registry/tiny_half_instance", source, "centre crop 256", None, 2, 0, None)
    stats = feature_logic.block_statistics(
        store, "registry/tiny_half_instance", source, "centre crop 256", view["block"], view["cache"]
    )
    assert len(stats) == view["channels"] and set(stats["block"]) == {view["block"]}
    figure = view["statistics"]
    assert np.allclose(np.asarray(figure.data[0].y, dtype=float), stats["mean before"])
    assert np.allclose(np.asarray(figure.data[3].y, dtype=float), stats["std after"])
    normalized = stats[stats["normalized"]]
    assert 0 < len(normalized) < len(stats)  # half instance norm: only the first half
    assert normalized["gamma"].notna().all() and stats.loc[~stats["normalized"], "gamma"].isna().all()
    assert set(stats["variant"]) == {"registry/tiny_half_instance"} and set(stats["image"]) == {source["name"]}
