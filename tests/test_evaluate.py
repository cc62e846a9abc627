import csv

import numpy as np
import pytest
import torch

from hinet import data
from hinet.checkpoint import save_checkpoint
from hinet.errors import ConfigError
from hinet.evaluate import degraded_input, evaluate_model, main, summarize, write_csv
from hinet.image import save_image
from hinet.metrics import Protocol, evaluate_pair
from hinet.registry import create_model
from hinet.tasks import get_task


def small_images():
    pool = data.skimage_images()
    return {
        "astro": np.ascontiguousarray(pool["astronaut"][180:220, 200:248]),
        "coffee": np.ascontiguousarray(pool["coffee"][100:140, 300:352]),
    }


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return create_model("tiny_half_instance").eval()


def test_degraded_input_depends_on_seed_and_name_only():
    clean = small_images()["astro"]
    a = degraded_input(clean, "denoise", {"sigma": 25}, 0, "astro")
    assert np.array_equal(a, degraded_input(clean, "denoise", {"sigma": 25}, 0, "astro"))
    assert not np.array_equal(a, degraded_input(clean, "denoise", {"sigma": 25}, 1, "astro"))
    assert not np.array_equal(a, degraded_input(clean, "denoise", {"sigma": 25}, 0, "other"))


def test_evaluate_model_rows_and_determinism(tiny_model):
    images = small_images()
    rows = evaluate_model(tiny_model, "denoise", {"sigma": 25}, images, seed=3, baselines=["nl_means"])
    methods = [(r["image"], r["method"]) for r in rows]
    assert methods == [(name, m) for name in images for m in ("input", "nl_means", "hinet")]
    for row in rows:
        assert set(row) == {"image", "method", "stats", "psnr", "ssim", "seconds"}
        assert row["stats"] == ("whole" if row["method"] == "hinet" else "")
        assert np.isfinite(row["psnr"]) and -1 <= row["ssim"] <= 1 and row["seconds"] >= 0
    by = {(r["image"], r["method"]): r for r in rows}
    # the input row is exactly the metric of the documented degraded input
    lq = degraded_input(images["astro"], "denoise", {"sigma": 25}, 3, "astro")
    assert by[("astro", "input")]["psnr"] == pytest.approx(evaluate_pair(lq, images["astro"])["psnr"])
    assert by[("astro", "nl_means")]["psnr"] > by[("astro", "input")]["psnr"] + 3
    with pytest.raises(ConfigError, match="no baseline"):
        evaluate_model(None, "jpeg", None, images, baselines=["bm3d"])
    again = evaluate_model(tiny_model, "denoise", {"sigma": 25}, images, seed=3)
    assert [r["method"] for r in again] == ["hinet", "hinet"]
    assert [r["psnr"] for r in again] == pytest.approx([by[(n, "hinet")]["psnr"] for n in images], abs=1e-9)


@pytest.mark.parametrize("task,baseline", [("deblur", "richardson_lucy"), ("derain", "median5"), ("jpeg", None)])
def test_baselines_per_task(task, baseline):
    images = {"astro": small_images()["astro"]}
    rows = evaluate_model(None, task, None, images, baselines=True)
    methods = [r["method"] for r in rows]
    assert methods == ["input"] + ([baseline] if baseline else [])
    if baseline:
        assert rows[1]["psnr"] > rows[0]["psnr"]


def test_protocol_defaults_and_summary(tiny_model):
    assert get_task("derain").protocol == Protocol(channel="y")
    rows = evaluate_model(tiny_model, "jpeg", {"quality": 20}, small_images(), tile=36)
    summary = summarize(rows)
    assert summary[0]["method"] == "hinet" and summary[0]["images"] == 2
    assert summary[0]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in rows]))


def test_write_csv_defaults_strength(tmp_path):
    rows = [{"image": "a", "method": "hinet", "psnr": float("inf"), "ssim": 1.0, "seconds": 0.5}]
    path = write_csv(tmp_path / "e.csv", rows, "jpeg", None, 0, Protocol())
    with open(path) as handle:
        written = list(csv.DictReader(handle))
    assert [r["image"] for r in written] == ["a", "mean"]
    assert written[0]["strength"] == "quality=10" and written[0]["psnr"] == "inf"


def test_cli_with_baselines(tmp_path, tiny_model, capsys):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, metadata={"task": "denoise"})
    image_dir = tmp_path / "images"
    save_image(image_dir / "crop.png", small_images()["coffee"])
    out_csv = tmp_path / "eval.csv"
    code = main(
        [
            str(checkpoint),
            "--level",
            "15",
            "--images",
            str(image_dir),
            "--baselines",
            "--out-csv",
            str(out_csv),
            "--save-outputs",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "protocol: RGB" in printed and "bm3d" in printed and "sigma=15" in printed
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    methods = {(r["image"], r["method"]) for r in rows}
    assert {("crop.png", m) for m in ("input", "bm3d", "nl_means", "hinet")} <= methods
    assert ("mean", "hinet") in methods
    assert all(r["task"] == "denoise" and r["strength"] == "sigma=15" for r in rows)
    scores = {r["method"]: float(r["psnr"]) for r in rows if r["image"] == "crop.png"}
    assert scores["bm3d"] > scores["input"] + 3
    assert (tmp_path / "out" / "bm3d" / "crop.png").is_file()
    assert (tmp_path / "out" / "hinet" / "crop.png").is_file()


def test_cli_pairs(tmp_path, tiny_model, capsys):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    clean = small_images()["astro"]
    save_image(tmp_path / "gt" / "a.png", clean)
    save_image(tmp_path / "lq" / "a.png", data.degrade(clean, "jpeg", quality=10))
    assert (
        main(
            [str(checkpoint), "--task", "jpeg", "--pairs", str(tmp_path / "lq"), str(tmp_path / "gt"), "--channel", "y"]
        )
        == 0
    )
    assert "Y (BT.601" in capsys.readouterr().out


def test_cli_skips_unreadable_files_lists_them_and_fails_at_the_end(tmp_path, tiny_model, capsys):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, metadata={"task": "denoise"})
    image_dir = tmp_path / "images"
    for name, image in small_images().items():
        save_image(image_dir / f"{name}.png", image)
    (image_dir / "broken.png").write_bytes(b"\x89PNG truncated")
    (image_dir / "empty.jpg").write_bytes(b"")
    out_csv = tmp_path / "eval.csv"
    assert main([str(checkpoint), "--images", str(image_dir), "--out-csv", str(out_csv)]) == 2
    captured = capsys.readouterr()
    assert "2 images from" in captured.out and "hinet" in captured.out  # the readable ones are reported
    assert "error: 2 unreadable image(s) skipped" in captured.err
    assert "  broken.png: " in captured.err and "  empty.jpg: " in captured.err
    assert "  astro.png: hinet" in captured.err  # progress, at the default verbosity
    with open(out_csv) as handle:
        assert {r["image"] for r in csv.DictReader(handle)} == {"astro.png", "coffee.png", "mean"}

    (image_dir / "astro.png").unlink()
    (image_dir / "coffee.png").unlink()
    assert main([str(checkpoint), "--images", str(image_dir)]) == 2
    err = capsys.readouterr().err
    assert "none of the 2 image file(s)" in err and len(err.strip().splitlines()) == 1


def test_cli_pairs_skip_unreadable_pairs(tmp_path, tiny_model, capsys):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    clean = small_images()["astro"]
    for name in ("a", "b"):
        save_image(tmp_path / "gt" / f"{name}.png", clean)
        save_image(tmp_path / "lq" / f"{name}.png", data.degrade(clean, "jpeg", quality=10))
    (tmp_path / "lq" / "b.png").write_bytes(b"not a png")
    assert main([str(checkpoint), "--task", "jpeg", "--pairs", str(tmp_path / "lq"), str(tmp_path / "gt"), "-q"]) == 2
    captured = capsys.readouterr()
    assert "hinet" in captured.out
    assert "1 unreadable image(s) skipped" in captured.err and "  b: " in captured.err
    assert "a: hinet" not in captured.err  # -q: no progress


def test_cli_errors(tmp_path, tiny_model, capsys):
    assert main([str(tmp_path / "missing.safetensors"), "--task", "denoise"]) == 2
    assert "not found" in capsys.readouterr().err
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model)
    assert main([str(checkpoint)]) == 2  # no --task and no task metadata
    assert "--task" in capsys.readouterr().err
    assert main([str(checkpoint), "--task", "denoise", "--level", "900"]) == 2
    err = capsys.readouterr().err
    assert "out of range" in err and len(err.strip().splitlines()) == 1
    assert main([str(checkpoint), "--task", "denoise", "--images", str(tmp_path / "none")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main([str(checkpoint), "--task", "dehaze"])
    assert exit_info.value.code == 2


def test_cli_reads_an_official_pth_with_task_given(tmp_path, tiny_model, capsys):
    image_dir = tmp_path / "images"
    save_image(image_dir / "crop.png", small_images()["coffee"])
    checkpoint = tmp_path / "official.pth"
    torch.save({"params": tiny_model.state_dict()}, checkpoint)
    out_csv = tmp_path / "eval.csv"
    assert (
        main(
            [
                str(checkpoint),
                "--task",
                "denoise",
                "--level",
                "15",
                "--images",
                str(image_dir),
                "--out-csv",
                str(out_csv),
            ]
        )
        == 0
    )
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert ("crop.png", "hinet") in {(r["image"], r["method"]) for r in rows}
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    # an official file names no task, so --task is required
    assert main([str(checkpoint), "--images", str(image_dir)]) == 2
    assert "give --task" in capsys.readouterr().err


def test_protocol_all_rows_summary_and_csv(tmp_path, tiny_model):
    images = small_images()
    rows = evaluate_model(tiny_model, "jpeg", {"quality": 20}, images, baselines=True, stats="all", train_patch=16)
    expected = [("input", ""), ("hinet", "whole"), ("hinet", "tiled"), ("hinet", "local")]
    assert [(r["image"], r["method"], r["stats"]) for r in rows] == [(n, m, s) for n in images for m, s in expected]
    by = {(r["image"], r["stats"]): r["psnr"] for r in rows if r["method"] == "hinet"}
    # the whole rows are today's default evaluation; tiled and local (16 px patch on 40 x 48 crops) differ
    default = evaluate_model(tiny_model, "jpeg", {"quality": 20}, images)
    assert [r["psnr"] for r in default] == pytest.approx([by[(n, "whole")] for n in images], abs=1e-9)
    assert by[("astro", "tiled")] != by[("astro", "whole")] and by[("astro", "local")] != by[("astro", "whole")]
    summary = summarize(rows)
    assert [(s["method"], s["stats"], s["images"]) for s in summary] == [(m, s, 2) for m, s in expected]
    path = write_csv(tmp_path / "e.csv", rows, "jpeg", {"quality": 20}, 0, Protocol())
    with open(path) as handle:
        written = list(csv.DictReader(handle))
    assert [r["stats"] for r in written if r["image"] == "mean"] == ["", "whole", "tiled", "local"]
    assert all(r["protocol"].startswith("RGB") for r in written)  # the metric protocol column is unchanged
    with pytest.raises(ConfigError, match="training patch size"):
        evaluate_model(tiny_model, "jpeg", None, images, stats="local")
    with pytest.raises(ConfigError, match="statistics protocol"):
        evaluate_model(tiny_model, "jpeg", None, images, stats="global")


def test_cli_protocol_all_reads_or_assumes_the_training_patch(tmp_path, tiny_model, capsys):
    image_dir = tmp_path / "images"
    save_image(image_dir / "crop.png", small_images()["coffee"])
    assumed = save_checkpoint(tmp_path / "assumed.safetensors", tiny_model, metadata={"task": "denoise"})
    out_csv = tmp_path / "eval.csv"
    assert (
        main(
            [
                str(assumed),
                "--level",
                "15",
                "--images",
                str(image_dir),
                "--protocol",
                "all",
                "--out-csv",
                str(out_csv),
                "--save-outputs",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "does not record its training patch size; assuming 64 px" in printed
    assert "statistics: whole" in printed and "statistics: tiled" in printed and "64 px tiles, overlap 16 px" in printed
    assert "statistics: local" in printed and "96 px at full resolution" in printed
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["stats"]) for r in rows if r["image"] == "crop.png"] == [
        ("hinet", "whole"),
        ("hinet", "tiled"),
        ("hinet", "local"),
    ]
    for folder in ("hinet", "hinet_tiled", "hinet_local"):
        assert (tmp_path / "out" / folder / "crop.png").is_file()

    recorded = save_checkpoint(
        tmp_path / "recorded.safetensors", tiny_model, metadata={"task": "denoise", "train_patch": "16"}
    )
    assert main([str(recorded), "--images", str(image_dir), "--protocol", "local"]) == 0
    printed = capsys.readouterr().out
    assert "24 px at full resolution" in printed and "assuming" not in printed
    assert main([str(recorded), "--images", str(image_dir), "--protocol", "tiled", "--train-patch", "8"]) == 0
    assert "8 px tiles, overlap 2 px" in capsys.readouterr().out
    assert main([str(recorded), "--images", str(image_dir), "--protocol", "tiled", "--train-patch", "0"]) == 2
    assert "training patch size" in capsys.readouterr().err


def test_every_task_level_in_one_run_with_its_baselines(tmp_path, tiny_model, capsys):
    checkpoint = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, metadata={"task": "derain"})
    image_dir = tmp_path / "images"
    for name, image in small_images().items():
        save_image(image_dir / f"{name}.png", image)
    out_csv = tmp_path / "levels.csv"
    args = [str(checkpoint), "--images", str(image_dir), "--task-levels", "--baselines", "--out-csv", str(out_csv)]
    assert main(args) == 0
    with open(out_csv) as handle:
        rows = list(csv.DictReader(handle))
    levels = [data.format_level(level) for _, level in get_task("derain").evaluation_levels]
    assert len(levels) == 2 and levels[0] != levels[1]
    means = {(r["strength"], r["method"]): float(r["psnr"]) for r in rows if r["image"] == "mean"}
    assert set(means) == {(level, method) for level in levels for method in ("input", "median5", "hinet")}
    assert means[(levels[0], "input")] > means[(levels[1], "input")]  # light rain degrades less than heavy
    per_image = [r for r in rows if r["image"] != "mean"]
    assert len(per_image) == 2 * 2 * 3 and {r["strength"] for r in per_image} == set(levels)
    # each level's rows are those of a one-level run at that level
    single = tmp_path / "single.csv"
    assert main([str(checkpoint), "--images", str(image_dir), "--level", levels[1], "--out-csv", str(single)]) == 0
    with open(single) as handle:
        alone = {r["image"]: float(r["psnr"]) for r in csv.DictReader(handle) if r["method"] == "hinet"}
    together = {r["image"]: float(r["psnr"]) for r in rows if r["method"] == "hinet" and r["strength"] == levels[1]}
    assert alone == pytest.approx(together, abs=1e-4)
    assert "level" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # one or the other, as argparse reports it
        main([str(checkpoint), "--task-levels", "--level", "0.3"])


def test_every_task_has_distinct_evaluation_levels_inside_its_ranges():
    for name in ("denoise", "deblur", "jpeg", "derain"):
        levels = get_task(name).evaluation_levels
        assert len(levels) >= 2 and len({data.format_level(level) for _, level in levels}) == len(levels)
    assert [level["sigma"] for _, level in get_task("denoise").evaluation_levels] == [15, 25, 50]
    assert get_task("jpeg").blind_ranges["quality"] == (10, 60)
