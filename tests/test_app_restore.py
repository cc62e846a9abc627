"""The restore tab's logic and the model store, without a server (tiny models, small images)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app import models
from app.models import ModelStore
from app.restore_logic import (
    CROP_COLOR,
    TILE_COLOR,
    RestoreRequest,
    absolute_error,
    crop_box,
    difference_map,
    difference_scale,
    draw_boxes,
    fit_for_screen,
    metrics_table,
    overview,
    run_restore,
    save_outputs,
    strength_for,
    summary,
    zoom_crop,
    zoom_panels,
)
from hinet.checkpoint import save_checkpoint
from hinet.errors import ConfigError, ImageError
from hinet.image import load_image, save_image
from hinet.inference import tile_boxes
from hinet.registry import create_model, get_config


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("tiny_half_instance").eval()


@pytest.fixture
def clean_png(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.random((40, 48, 3)).astype(np.float32)
    return save_image(tmp_path / "clean.png", pixels)


# ---------------------------------------------------------------------------------------------- views


def test_crop_box_centres_and_keeps_its_size_at_the_edges():
    assert crop_box(100, 200, 0.5, 0.5, 4) == (38, 75, 63, 125)
    assert crop_box(100, 200, 0.0, 0.0, 4) == (0, 0, 25, 50)  # shifted inside, not shrunk
    assert crop_box(100, 200, 1.0, 1.0, 4) == (75, 150, 100, 200)
    assert crop_box(100, 200, 0.3, 0.7, 1) == (0, 0, 100, 200)
    assert crop_box(3, 3, 0.5, 0.5, 100) == (1, 1, 2, 2)  # never smaller than one pixel


def test_zoom_crop_repeats_pixels_by_an_integer_factor():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    panel = zoom_crop(image, (1, 2, 3, 6), panel_size=16)  # 2 x 4 crop -> factor 4
    assert panel.shape == (8, 16, 3)
    assert np.array_equal(panel[::4, ::4], image[1:3, 2:6])
    assert np.array_equal(panel[3, 7], image[1, 3])  # every enlarged block is one source pixel


def test_difference_map_scale_and_colours():
    gt = np.zeros((4, 4, 3), np.float32)
    out = gt.copy()
    out[0, 0] = 0.5
    error = absolute_error(out, gt)
    assert error[0, 0] == pytest.approx(0.5) and error[1, 1] == 0
    heat = difference_map(error, scale=0.25)
    assert heat.shape == (4, 4, 3) and heat.dtype == np.uint8
    assert heat[1, 1].sum() < 10  # zero error is black in magma
    assert heat[0, 0].sum() > 600  # at or over the scale: the brightest colour
    assert difference_scale([np.zeros((3, 3))]) == pytest.approx(1 / 255)  # floor: one 8-bit level
    with pytest.raises(ImageError):
        absolute_error(out, gt[:2])


def test_draw_boxes_outlines_only():
    image = np.zeros((20, 30, 3), np.uint8)
    drawn = draw_boxes(image, [(0, 0, 10, 15)], (255, 0, 0), thickness=1)
    assert tuple(drawn[0, 7]) == (255, 0, 0) and tuple(drawn[9, 14]) == (255, 0, 0)
    assert tuple(drawn[5, 7]) == (0, 0, 0)  # interior untouched
    assert image.sum() == 0  # the input is not modified


def test_fit_for_screen_reduces_only_large_pictures():
    small = np.zeros((10, 10, 3), np.uint8)
    assert fit_for_screen(small, 100)[1] == 1
    reduced, factor = fit_for_screen(np.zeros((30, 40, 3), np.uint8), 100)
    assert factor == 4 and reduced.shape == (8, 10, 3)  # PIL keeps partial blocks


# ------------------------------------------------------------------------------------------ pipeline


def test_degrade_then_restore_has_metrics_and_grid(clean_png, tiny_model):
    request = RestoreRequest(
        task="denoise",
        variant_ids=("a", "b"),
        image_path=str(clean_png),
        degrade_first=True,
        strength={"sigma": 25},
        seed=3,
    )
    calls = []
    result = run_restore(request, lambda _: tiny_model, progress=lambda f, text: calls.append(f))
    assert result.gt_pixels is not None and result.input_metrics["psnr"] < 25  # sigma 25 noise
    assert not np.allclose(result.input_pixels, result.gt_pixels)
    table = metrics_table(result)
    assert list(table.columns) == ["variant", "PSNR (dB)", "SSIM", "seconds"]
    assert list(table["variant"]) == ["input (no restoration)", "a", "b"]
    assert table["PSNR (dB)"].notna().all() and (table["seconds"].iloc[1:] > 0).all()
    assert calls and calls[-1] <= 1.0 and sorted(calls) == calls
    # Same seed, same degraded input: the degradation is reproducible.
    again = run_restore(request, lambda _: tiny_model)
    assert np.array_equal(again.input_pixels, result.input_pixels)

    box = crop_box(result.height, result.width, 0.5, 0.5, 4)
    panels, scale = zoom_panels(result, box)
    assert [c for _, c in panels] == ["input", "a", "b", "ground truth"] and scale is None
    assert len({p.shape for p, _ in panels}) == 1
    diff_panels, scale = zoom_panels(result, box, show_difference=True)
    assert scale is not None and len(diff_panels) == 4


def test_upload_without_gt_has_no_metrics_and_gt_size_is_checked(clean_png, tmp_path, tiny_model):
    request = RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png))
    result = run_restore(request, lambda _: tiny_model)
    assert result.gt_pixels is None and result.outputs[0].metrics is None
    assert list(metrics_table(result).columns) == ["variant", "seconds"]
    panels, _ = zoom_panels(result, (0, 0, 8, 8), show_difference=True)  # no GT: plain panels
    assert len(panels) == 2

    with_gt = run_restore(
        RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png), gt_path=str(clean_png)),
        lambda _: tiny_model,
    )
    assert with_gt.input_metrics["psnr"] == float("inf") or with_gt.input_metrics["psnr"] > 90

    other = save_image(tmp_path / "other.png", np.zeros((10, 12, 3), np.float32))
    with pytest.raises(ImageError, match="ground truth is 12 x 10"):
        run_restore(
            RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png), gt_path=str(other)),
            lambda _: tiny_model,
        )


@pytest.mark.parametrize("ids, message", [((), "at least one"), (("a", "b", "c", "d", "e"), "at most 4")])
def test_variant_count_is_checked(clean_png, tiny_model, ids, message):
    with pytest.raises(ConfigError, match=message):
        run_restore(RestoreRequest(task="denoise", variant_ids=ids, image_path=str(clean_png)), lambda _: tiny_model)


def test_missing_and_corrupt_inputs_raise_image_errors(tmp_path, tiny_model):
    with pytest.raises(ImageError, match="Upload an image"):
        run_restore(RestoreRequest(task="denoise", variant_ids=("a",)), lambda _: tiny_model)
    corrupt = tmp_path / "bad.png"
    corrupt.write_bytes(b"\x89PNG not really")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path in (corrupt, empty):
        with pytest.raises(ImageError):
            run_restore(RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path)), lambda _: tiny_model)


def test_tiled_restore_draws_its_tile_grid(tmp_path, tiny_model):
    path = save_image(tmp_path / "wide.png", np.random.default_rng(2).random((80, 96, 3)).astype(np.float32))
    request = RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path), tile=64, overlap=16)
    result = run_restore(request, lambda _: tiny_model)
    assert result.tiles == tile_boxes(80, 96, 64, 16) and len(result.tiles) == 4
    seams = run_restore(
        RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path), tile=64, overlap=16, show_seams=True),
        lambda _: tiny_model,
    )
    assert seams.overlap == 0 and not np.allclose(seams.outputs[0].pixels, result.outputs[0].pixels)
    box = (0, 0, 4, 4)
    picture = overview(result, box)
    y0, x0, y1, x1 = result.tiles[-1]
    assert tuple(picture[y1 - 1, (x0 + x1) // 2]) == TILE_COLOR
    assert tuple(picture[0, 1]) == CROP_COLOR


def test_tile_size_must_be_a_multiple_of_the_step(clean_png, tiny_model):
    with pytest.raises(ConfigError, match="multiple of 32"):
        run_restore(
            RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png), tile=100),
            lambda _: tiny_model,
        )


def test_strength_for_picks_the_task_sliders():
    values = {"denoise_sigma": 40, "deblur_length": 9, "deblur_angle": 10}
    assert strength_for("denoise", values) == {"sigma": 40}
    assert strength_for("deblur", values) == {"length": 9, "angle": 10}


def test_downloads_keep_16_bit_and_alpha(tmp_path, tiny_model):
    rng = np.random.default_rng(1)
    rgba16 = (rng.random((24, 20, 4)) * 65535).astype(np.uint16)
    source = save_image(tmp_path / "deep.png", rgba16)
    result = run_restore(
        RestoreRequest(task="denoise", variant_ids=("registry/x",), image_path=str(source)), lambda _: tiny_model
    )
    (path,) = save_outputs(result, tmp_path / "out").values()
    back = load_image(path)
    assert back.bit_depth == 16 and back.alpha is not None
    assert np.allclose(back.alpha, rgba16[..., 3] / 65535.0, atol=1e-6)


# --------------------------------------------------------------------------------------- model store


def test_labels_say_untrained_and_trained_psnr():
    config = get_config("tiny_half_instance")
    untrained = models.entry_label("tiny_half_instance", config, 1234, False, None, None, "registry")
    assert "untrained" in untrained and "half_instance r0.50" in untrained and "0.00M params" in untrained
    trained = models.entry_label("denoise", config, 1_380_000, True, "denoise", 28.123, "results")
    assert "untrained" not in trained and "test 28.12 dB" in trained and "1.38M" in trained


def test_scan_lists_runs_skips_bad_files_and_prefers_trained(tmp_path, tiny_model):
    # no results folder: shipped or sweeping runs would win
    store = ModelStore(
        results_dir=tmp_path / "no_results",
        runs_dir=tmp_path,
        registry_prefix="tiny_",
        default_untrained="tiny_half_instance",
    )
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"not a checkpoint")
    save_checkpoint(
        tmp_path / "mine" / "model.safetensors",
        tiny_model,
        metadata={"task": "deblur", "test_psnr": 27.5, "trained": True},
    )

    entries, warnings = store.scan("deblur")
    ids = [e.id for e in entries]
    assert "runs/mine" in ids and "registry/tiny_half_instance" in ids
    assert any("broken" in w for w in warnings)
    mine = next(e for e in entries if e.id == "runs/mine")
    assert mine.trained and mine.task == "deblur" and mine.test_psnr == 27.5 and mine.source == "runs"
    assert all(not e.trained and "untrained" in e.label for e in entries if e.source == "registry")
    assert store.default_entry(entries, "deblur").id == "runs/mine"

    denoise_entries, _ = store.scan("denoise")
    assert "runs/mine" not in [e.id for e in denoise_entries]  # trained for another task
    assert store.default_entry(denoise_entries, "denoise").id == "registry/tiny_half_instance"


def test_get_model_is_cached_eval_and_reproducible(tmp_path):
    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path, registry_prefix="tiny_")
    first = store.get_model("registry/tiny_batch")
    assert store.get_model("registry/tiny_batch") is first and not first.training
    store.clear_cache()
    second = store.get_model("registry/tiny_batch")
    assert second is not first
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ConfigError):
        store.get_model("registry/not_a_variant")
    # Two stores share nothing: each loads its own copy.
    assert ModelStore(results_dir=tmp_path, runs_dir=tmp_path).get_model("registry/tiny_batch") is not second


def test_unknown_and_deleted_models_are_told_apart(tmp_path, tiny_model):
    store = ModelStore(results_dir=tmp_path / "results", runs_dir=tmp_path / "runs")
    for never in ("no_such_model", "runs/never_trained", "registry/not_a_variant"):
        with pytest.raises(ConfigError, match="unknown model") as info:
            store.find_entry(never)
        assert "not available any more" not in str(info.value)
    save_checkpoint(tmp_path / "runs" / "gone" / "model.safetensors", tiny_model, metadata={"task": "denoise"})
    assert "runs/gone" in [e.id for e in store.list_entries("denoise")]
    (tmp_path / "runs" / "gone" / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="not available any more; refresh the model list"):
        store.find_entry("runs/gone")


def test_user_errors_turn_exceptions_into_plain_gradio_errors():
    import inspect

    import gradio as gr

    from app.errors import user_errors

    @user_errors
    def bad_image():
        raise ImageError("image.png is empty (0 bytes)")

    @user_errors
    def bug():
        raise KeyError("oops")

    with pytest.raises(gr.Error) as info:
        bad_image()
    assert info.value.message == "image.png is empty (0 bytes)"
    with pytest.raises(gr.Error) as info:
        bug()
    assert info.value.message.startswith("Internal error: KeyError")

    @user_errors
    def streaming():
        yield 1
        raise ConfigError("steps must be a number; got None")

    assert inspect.isgeneratorfunction(streaming)  # Gradio streams only generator functions
    stream = streaming()
    assert next(stream) == 1
    with pytest.raises(gr.Error) as info:
        next(stream)
    assert info.value.message == "steps must be a number; got None"


def test_results_models_and_runs_take_psnr_from_metadata_or_ablation_csv(tmp_path, tiny_model):
    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "no_runs")
    save_checkpoint(
        tmp_path / "models" / "denoise.safetensors",
        tiny_model,
        metadata={"task": "denoise", "trained": "true", "test_psnr": 28.25},
    )
    save_checkpoint(tmp_path / "runs" / "r1" / "model.safetensors", tiny_model, metadata={"task": "denoise"})
    # a comparison variant with a better score still does not replace the task's default file
    save_checkpoint(
        tmp_path / "models" / "denoise_hin.safetensors",
        tiny_model,
        metadata={"task": "denoise", "trained": "true", "test_psnr": 30.0},
    )
    (tmp_path / "ablation.csv").write_text("run,image,psnr\nr1,a,27.0\nr1,b,28.0\nr2,a,30.0\n")
    entries = {e.id: e for e in store.list_entries("denoise")}
    shipped, run = entries["results/models/denoise"], entries["results/runs/r1"]
    assert shipped.trained and shipped.test_psnr == 28.25 and "test 28.25 dB" in shipped.label
    assert run.source == "results" and run.test_psnr == pytest.approx(27.5)
    assert store.default_entry(list(entries.values()), "denoise").id == "results/models/denoise"


def test_task_change_shows_that_tasks_sliders_and_a_default_model(tmp_path):
    from app.restore_tab import on_task_change
    from hinet.tasks import TASK_NAMES

    variants, slider_variant, warnings, *groups = on_task_change(
        ModelStore(results_dir=tmp_path, runs_dir=tmp_path), "deblur"
    )
    assert [g["visible"] for g in groups] == [t == "deblur" for t in TASK_NAMES]
    assert variants["value"] == ["registry/small_hin"] and warnings == ""
    assert all("untrained" in label for label, _ in variants["choices"])


def test_checkpoints_without_a_trained_flag_are_labelled_untrained(tmp_path, tiny_model):
    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "no_runs")
    save_checkpoint(tmp_path / "models" / "unlabelled.safetensors", tiny_model, metadata={"task": "denoise"})
    entry = store.find_entry("results/models/unlabelled")
    assert not entry.trained and "untrained" in entry.label
    assert store.default_entry(store.list_entries("denoise"), "denoise").source == "registry"


def test_official_pth_in_results_or_runs_is_listed_and_loads(tmp_path, tiny_model):
    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "runs_dir")
    (tmp_path / "models").mkdir()
    (tmp_path / "runs_dir").mkdir()
    torch.save({"params": tiny_model.state_dict()}, tmp_path / "models" / "official.pth")
    torch.save(tiny_model.state_dict(), tmp_path / "runs_dir" / "mine.pth")
    ids = [e.id for e in store.list_entries("deblur")]
    assert "results/models/official" in ids and "runs/mine.pth" in ids
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = tiny_model(image)[-1]
        for entry_id in ("results/models/official", "runs/mine.pth"):
            assert store.find_entry(entry_id).trained  # load_any_checkpoint says official weights are trained
            assert torch.equal(store.get_model(entry_id)(image)[-1], expected)


def test_a_negative_seed_is_a_plain_config_error(clean_png):
    request = RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png), degrade_first=True, seed=-1)
    with pytest.raises(ConfigError, match="seed must be a whole number of at least 0; got -1"):
        run_restore(request, lambda _: create_model("tiny_half_instance").eval())


def test_images_too_small_for_ssim_are_restored_and_scored_by_psnr(tmp_path, tiny_model):
    from app.restore_logic import summary

    rng = np.random.default_rng(0)
    small = save_image(tmp_path / "small.png", rng.random((8, 10, 3)).astype(np.float32))
    result = run_restore(
        RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(small), degrade_first=True),
        lambda _: tiny_model,
    )
    output = result.outputs[0]
    assert output.pixels.shape == (8, 10, 3)
    assert output.metrics["ssim"] is None and np.isfinite(output.metrics["psnr"])
    assert result.input_metrics["ssim"] is None
    table = metrics_table(result)
    assert table["SSIM"].isna().all() and table["PSNR (dB)"].notna().all()
    assert "No SSIM: its 11 x 11 window does not fit a 10 x 8 px image; PSNR is shown." in summary(result)
    # 11 x 11 is enough
    fits = save_image(tmp_path / "fits.png", rng.random((11, 11, 3)).astype(np.float32))
    result = run_restore(
        RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(fits), degrade_first=True),
        lambda _: tiny_model,
    )
    assert result.outputs[0].metrics["ssim"] is not None and "No SSIM" not in summary(result)


def test_slider_output_of_an_unknown_variant_is_a_config_error(clean_png):
    request = RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(clean_png), degrade_first=True)
    result = run_restore(request, lambda _: create_model("tiny_half_instance").eval())
    assert result.output("a") is result.outputs[0]
    with pytest.raises(ConfigError, match="not among the variants"):
        result.output("registry/other")


def test_a_restores_folder_is_deleted_when_its_state_expires(tmp_path):
    import gradio as gr

    from app.context import AppContext
    from app.restore_tab import STATE_TTL_S, build_tab, delete_download_dir

    store = ModelStore(runs_dir=tmp_path, registry_prefix="tiny_", default_untrained="tiny_half_instance")
    with gr.Blocks() as demo:
        with gr.Tabs() as tabs, gr.Tab("Restore"):
            ctx = AppContext(tabs=tabs, store=store)
            build_tab(ctx)
    states = [block for block in demo.blocks.values() if isinstance(block, gr.State) and block is not ctx.uploads]
    # The restore's result (with its folder of files) and the model input it shares with the other tabs.
    assert [s.time_to_live for s in states] == [STATE_TTL_S, STATE_TTL_S] and ctx.restore_input in states
    assert [s.delete_callback for s in states if s is not ctx.restore_input] == [delete_download_dir]

    folder = tmp_path / "hinet_restore_x"
    (folder / "screen").mkdir(parents=True)
    (folder / "screen" / "a.png").write_bytes(b"png")
    delete_download_dir({"download_dir": str(folder)})
    assert not folder.exists()
    delete_download_dir(None)  # a session that never restored


def test_example_images_are_written_atomically_by_concurrent_threads(tmp_path, monkeypatch):
    import threading

    from app import restore_logic

    monkeypatch.setenv("HINET_CACHE", str(tmp_path))
    barrier = threading.Barrier(4)
    errors = []

    def make():
        barrier.wait()
        try:
            restore_logic.example_path("chelsea")
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert load_image(str(tmp_path / "app_examples" / "chelsea.png")).pixels.shape == (256, 256, 3)
    assert [p.name for p in (tmp_path / "app_examples").iterdir()] == ["chelsea.png"]  # no temporary files left


def test_feature_tab_opens_on_a_trained_hin_model_when_the_task_default_uses_batch_norm(tmp_path):
    from app.feature_logic import variant_choices
    from hinet import create_model
    from hinet.checkpoint import save_checkpoint

    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "no_runs")
    for name, variant in (("denoise", "tiny_batch"), ("denoise_hin", "tiny_half_instance")):
        save_checkpoint(
            tmp_path / "models" / f"{name}.safetensors",
            create_model(variant),
            metadata={"task": "denoise", "trained": "true", "test_psnr": 30.0},
        )
    assert store.default_entry(store.list_entries("denoise"), "denoise").id == "results/models/denoise"
    _, default_id, other_id = variant_choices(store)
    assert (default_id, other_id) == ("results/models/denoise_hin", "results/models/denoise")


def test_stats_protocols_run_per_model_training_patch_and_say_so(tmp_path, tiny_model):
    from hinet.inference import restore

    path = save_image(tmp_path / "wide.png", np.random.default_rng(3).random((64, 96, 3)).astype(np.float32))
    patches = {"a": (32, None), "b": (64, "assumed 64 px")}
    request = RestoreRequest(task="denoise", variant_ids=("a", "b"), image_path=str(path), stats="tiled")
    result = run_restore(request, lambda _: tiny_model, train_patch_of=patches.__getitem__)
    pixels = load_image(path).pixels
    np.testing.assert_allclose(result.outputs[0].pixels, restore(tiny_model, pixels, tile=32, overlap=8), atol=1e-6)
    np.testing.assert_allclose(result.outputs[1].pixels, restore(tiny_model, pixels, tile=64, overlap=16), atol=1e-6)
    assert result.tiles == tile_boxes(64, 96, 32, 8)  # the first model's grid is drawn
    assert "assumed 64 px" in result.outputs[1].stats_text and "assumed" not in result.outputs[0].stats_text
    from app.restore_logic import summary

    assert "Test-time statistics" in summary(result)

    local = run_restore(
        RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path), stats="local"),
        lambda _: tiny_model,
        train_patch_of=patches.__getitem__,
    )
    np.testing.assert_allclose(
        local.outputs[0].pixels, restore(tiny_model, pixels, stats="local", train_patch=32), atol=1e-6
    )
    assert not local.tiles and "local" in local.outputs[0].stats_text
    whole = run_restore(RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path)), lambda _: tiny_model)
    assert not np.allclose(whole.outputs[0].pixels, local.outputs[0].pixels)
    with pytest.raises(ConfigError, match="test-time statistics"):
        run_restore(
            RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path), stats="global"),
            lambda _: tiny_model,
        )


def test_each_models_default_statistics_come_from_its_checkpoint(tmp_path, tiny_model):
    """The app's default "Run on" choice runs every model with the statistics its checkpoint records
    (hinet.stats_choice) and says which and why; a file without a record runs whole-image."""
    from hinet.inference import restore

    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "no_runs")
    recorded = {"task": "denoise", "trained": "true", "train_patch": 32, "inference_stats": "tiled"}
    recorded["inference_stats_reason"] = "best on validation"
    save_checkpoint(tmp_path / "models" / "denoise.safetensors", tiny_model, metadata=recorded)
    save_checkpoint(tmp_path / "models" / "denoise_old.safetensors", tiny_model, metadata={"task": "denoise"})
    ids = ("results/models/denoise", "results/models/denoise_old")
    assert store.default_stats_of(ids[0]) == ("tiled", "this model's default, best on validation")
    assert store.default_stats_of(ids[1])[0] == "whole"
    path = save_image(tmp_path / "wide.png", np.random.default_rng(3).random((64, 96, 3)).astype(np.float32))
    request = RestoreRequest(task="denoise", variant_ids=ids, image_path=str(path))
    assert request.stats == "default"
    result = run_restore(
        request, store.get_model, train_patch_of=store.train_patch_of, default_stats_of=store.default_stats_of
    )
    pixels = load_image(path).pixels
    model = store.get_model(ids[0])
    np.testing.assert_allclose(
        result.outputs[0].pixels, restore(model, pixels, stats="tiled", train_patch=32), atol=1e-6
    )
    np.testing.assert_allclose(result.outputs[1].pixels, restore(model, pixels), atol=1e-6)
    assert "best on validation" in result.outputs[0].stats_text and "tiled" in result.outputs[0].stats_text
    assert "no default recorded" in result.outputs[1].stats_text


def test_entries_carry_their_training_patch(tmp_path, tiny_model):
    store = ModelStore(results_dir=tmp_path, runs_dir=tmp_path / "no_runs")
    save_checkpoint(
        tmp_path / "models" / "p.safetensors",
        tiny_model,
        metadata={"task": "denoise", "trained": "true", "train_patch": 96},
    )
    save_checkpoint(tmp_path / "models" / "q.safetensors", tiny_model, metadata={"task": "denoise", "trained": "true"})
    assert store.train_patch_of("results/models/p") == (96, None)
    patch, note = store.train_patch_of("results/models/q")
    assert patch == 64 and "assuming 64 px" in note


# ------------------------------------------------------------------------------------ task protocols


def test_app_derain_psnr_equals_hinet_evaluate_on_the_same_image(tmp_path, tiny_model):
    """The app scores a task as results/ does (`Task.protocol`: derain on Y), so its numbers are the
    numbers `hinet.evaluate` publishes for the same image, model and degradation."""
    from hinet.data import PairedFolder, skimage_images
    from hinet.evaluate import degraded_input, evaluate_pairs
    from hinet.metrics import Protocol, evaluate_pair
    from hinet.tasks import get_task

    clean = np.ascontiguousarray(skimage_images()["astronaut"][180:228, 200:264])
    degraded = degraded_input(clean, "derain", get_task("derain").defaults, 0, "astro")
    (tmp_path / "lq").mkdir()
    (tmp_path / "gt").mkdir()
    lq_path = save_image(tmp_path / "lq" / "astro.png", np.clip(degraded, 0, 1))
    gt_path = save_image(tmp_path / "gt" / "astro.png", clean)

    request = RestoreRequest(task="derain", variant_ids=("m",), image_path=str(lq_path), gt_path=str(gt_path))
    app = run_restore(request, lambda _: tiny_model)
    rows = evaluate_pairs(tiny_model, PairedFolder(tmp_path / "lq", tmp_path / "gt"), "derain", baselines=True)
    published = {row["method"]: row for row in rows}
    assert app.outputs[0].metrics["psnr"] == pytest.approx(published["hinet"]["psnr"], abs=1e-9)
    assert app.outputs[0].metrics["ssim"] == pytest.approx(published["hinet"]["ssim"], abs=1e-9)
    assert app.input_metrics["psnr"] == pytest.approx(published["input"]["psnr"], abs=1e-9)
    # ...and that is the Y channel: RGB, which the app used before, gives another number.
    rgb = evaluate_pair(app.outputs[0].pixels, app.gt_pixels, Protocol(channel="rgb"))["psnr"]
    assert abs(rgb - app.outputs[0].metrics["psnr"]) > 0.01
    assert "Y (BT.601, 0-255)" in summary(app) and "derain" in summary(app)

    # Degrading in the app scores the same way.
    degrade_first = run_restore(
        RestoreRequest(task="derain", variant_ids=("m",), image_path=str(gt_path), degrade_first=True),
        lambda _: tiny_model,
    )
    expected = evaluate_pair(degrade_first.outputs[0].pixels, degrade_first.gt_pixels, Protocol(channel="y"))
    assert degrade_first.outputs[0].metrics == pytest.approx(expected)


def test_an_animated_upload_says_only_its_first_frame_is_used(tmp_path, tiny_model):
    from PIL import Image

    frames = [Image.new("RGB", (24, 16), color) for color in ((200, 30, 30), (30, 30, 200))]
    path = tmp_path / "moving.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    result = run_restore(RestoreRequest(task="denoise", variant_ids=("a",), image_path=str(path)), lambda _: tiny_model)
    assert "moving.gif is an animated GIF with 2 frames; only the first frame is used" in summary(result)


def test_a_checkpoint_asking_for_an_absurd_model_is_listed_but_refused_without_allocating(tmp_path, monkeypatch):
    import json

    import torch
    from safetensors.torch import save_file

    from hinet.errors import CheckpointError

    store = ModelStore(results_dir=tmp_path / "no_results", runs_dir=tmp_path, registry_prefix="tiny_")
    for name, config in (("huge", {"wf": 256, "depth": 8}), ("absurd", {"wf": 100000, "depth": 40})):
        (tmp_path / name).mkdir()
        save_file(
            {"conv_01.weight": torch.zeros(1)},
            str(tmp_path / name / "model.safetensors"),
            metadata={"config": json.dumps(config), "task": json.dumps("denoise"), "trained": "true"},
        )
    entries, warnings = store.scan("denoise")
    assert any("absurd" in w and "wf must be at most 256" in w for w in warnings)
    huge = next(e for e in entries if e.id == "runs/huge")
    assert huge.params > 10**10  # counted from the config; building it would need hundreds of GB
    with pytest.raises(CheckpointError, match="more than the limit"):
        store.get_model("runs/huge")
