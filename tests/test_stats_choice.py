"""Each model's default test-time statistics (hinet.stats_choice): chosen on validation, recorded at ship
time, used by the CLI's `--stats default`."""

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hinet.restore as restore_cli
import hinet.stats_choice as stats_choice
from hinet.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from hinet.image import load_image
from hinet.inference import restore
from hinet.registry import create_model
from hinet.runs import SHIPPED_MODELS_DIR

ROOT = Path(__file__).resolve().parent.parent


def _pairs(n=2, size=48):
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(n):
        clean = rng.random((size, size, 3)).astype(np.float32)
        pairs.append((np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32), clean))
    return pairs


def test_a_model_without_input_statistics_runs_whole_without_measuring():
    choice = stats_choice.choose_stats(create_model("tiny_batch").eval(), "denoise", _pairs(), 32)
    assert choice.chosen == "whole" and choice.scores == {} and "same computation" in choice.reason


def test_the_best_protocol_wins_and_a_tie_goes_to_the_fastest(monkeypatch):
    errors = {"whole": 0.05, "tiled": 0.01, "local": 0.03}
    delays = {"whole": 0.0, "tiled": 0.0, "local": 0.0}

    def fake_restore(model, lq, stats, train_patch):
        time.sleep(delays[stats])
        return lq * 0 + fake_restore.clean + errors[stats]

    def choose():
        pair = _pairs(n=1)
        fake_restore.clean = pair[0][1] * 0.9  # room for the error without clipping
        pairs = [(pair[0][0], fake_restore.clean)]
        return stats_choice.choose_stats(create_model("tiny_half_instance").eval(), "denoise", pairs, 32)

    monkeypatch.setattr(stats_choice, "restore", fake_restore)
    choice = choose()
    assert choice.chosen == "tiled" and set(choice.scores) == {"whole", "tiled", "local"}
    assert choice.scores["tiled"]["psnr"] == pytest.approx(
        40.0, abs=0.3
    )  # error 0.01 everywhere (then rounded to uint8)
    assert "others: whole -13.8" in choice.reason
    errors["local"] = 0.01  # a tie with tiled: the faster wins
    delays["tiled"] = 0.05
    assert choose().chosen == "local"
    metadata = choose().metadata()
    assert metadata[stats_choice.METADATA_KEY] == "local" and set(metadata[stats_choice.SCORES_KEY]) == set(errors)


def test_recorded_stats_reads_the_metadata_and_states_the_cost():
    assert stats_choice.recorded_stats({})[0] == "whole"
    chosen, why = stats_choice.recorded_stats(
        {
            "inference_stats": "tiled",
            "inference_stats_reason": "best on validation",
            "inference_stats_scores": {"whole": {"psnr": 30, "seconds": 2.0}, "tiled": {"psnr": 31, "seconds": 3.0}},
        }
    )
    assert chosen == "tiled" and "best on validation" in why and "1.5x the time" in why
    assert stats_choice.recorded_stats({"inference_stats": "bogus"})[0] == "whole"


def test_ship_model_records_the_choice(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "scripts" / "ship_model.py")
    ship_model = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ship_model
    spec.loader.exec_module(ship_model)
    monkeypatch.setattr(ship_model, "validation_pairs", lambda task: _pairs(size=64))
    torch.manual_seed(0)
    run = tmp_path / "run"
    metadata = {"task": "denoise", "trained": "true", "train_patch": 32}
    save_checkpoint(run / "model.safetensors", create_model("tiny_half_instance"), metadata=metadata)
    assert ship_model.main([str(run), "--results", str(tmp_path / "results")]) == 0
    shipped = read_metadata(tmp_path / "results" / "models" / "denoise.safetensors")
    assert shipped["inference_stats"] in ("whole", "tiled", "local")
    assert set(shipped["inference_stats_scores"]) == {"whole", "tiled", "local"}
    assert "test-time statistics:" in capsys.readouterr().out
    assert shipped["source_run"] == run.resolve().as_posix()  # outside the project: absolute
    monkeypatch.chdir(ROOT / "scripts")  # from another folder, a relative path inside the project
    assert ship_model.recorded_run_path("../results/defaults/denoise") == "results/defaults/denoise"
    monkeypatch.chdir(run)
    assert ship_model.recorded_run_path(".") == run.resolve().as_posix()

    # re-shipped with its evaluation: the recorded test score is the one under its default statistics
    eval_csv = tmp_path / "eval.csv"
    header = "image,method,stats,psnr,ssim,seconds,task,strength,seed,protocol\n"
    scores = {"whole": 20.0, "tiled": 21.0, "local": 22.0}
    body = "mean,input,,10.0,0.1,0,denoise,sigma=25,0,RGB\n" + "".join(
        f"mean,hinet,{stats},{psnr},0.5,1,denoise,sigma=25,0,RGB\n" for stats, psnr in scores.items()
    )
    eval_csv.write_text(header + body)
    assert ship_model.main([str(run), "--results", str(tmp_path / "results"), "--eval-csv", str(eval_csv)]) == 0
    shipped = read_metadata(tmp_path / "results" / "models" / "denoise.safetensors")
    chosen = shipped["inference_stats"]  # chosen again: a tie between protocols goes to the faster one
    assert shipped["test_psnr"] == scores[chosen] and shipped["test_stats"] == chosen
    whole_only = tmp_path / "old.csv"
    whole_only.write_text(header.replace("stats,", "") + "mean,hinet,19.0,0.5,1,denoise,sigma=25,0,RGB\n")
    assert ship_model.read_mean_row(whole_only, "tiled")["psnr"] == "19.0"
    levels = tmp_path / "levels.csv"
    levels.write_text(header + "mean,hinet,whole,31.0,0.5,1,denoise,sigma=15,0,RGB\n" + body)
    assert ship_model.read_mean_row(levels, "whole", "sigma=25")["psnr"] == "20.0"  # the default level
    assert ship_model.read_mean_row(levels, "whole", "sigma=50")["psnr"] == "31.0"  # absent: the first


def test_the_cli_uses_the_models_recorded_default(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    folder = tmp_path / "models"
    model = create_model("tiny_half_instance")
    metadata = {"task": "denoise", "train_patch": 16, "inference_stats": "tiled", "inference_stats_reason": "test"}
    save_checkpoint(folder / "denoise.safetensors", model, metadata=metadata)
    monkeypatch.setattr(restore_cli, "DEFAULT_MODELS_DIR", folder)
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(src)
    loaded, _ = load_checkpoint(folder / "denoise.safetensors")
    outputs = {}
    for flag in ("default", "whole", "tiled"):
        assert restore_cli.main([str(src), str(tmp_path / f"{flag}.png"), "--task", "denoise", "--stats", flag]) == 0
        outputs[flag] = np.asarray(Image.open(tmp_path / f"{flag}.png"))
    assert "test-time statistics: tiled (this model's default, test)" in capsys.readouterr().out
    assert np.array_equal(outputs["default"], outputs["tiled"]) and not np.array_equal(
        outputs["tiled"], outputs["whole"]
    )
    expected = restore(loaded, load_image(src).pixels, stats="tiled", train_patch=16)
    assert np.array_equal(outputs["default"], np.rint(expected * 255).astype(np.uint8))
    # --tile bounds memory: with a tiled default the training-patch tiles bound it already, so they run and
    # the command says so; asking for --stats tiled and --tile together is a contradiction, refused.
    assert restore_cli.main([str(src), str(tmp_path / "x.png"), "--task", "denoise", "--tile", "512"]) == 0
    assert "--tile 512 is not used: the 16 px training-patch tiles" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(tmp_path / "x.png")), outputs["default"])
    explicit = [str(src), str(tmp_path / "y.png"), "--task", "denoise", "--tile", "16", "--stats", "tiled"]
    assert restore_cli.main(explicit) == 2 and not (tmp_path / "y.png").exists()
    assert "give one of them" in capsys.readouterr().err
    # A local default keeps --tile as memory tiling (local statistics per tile).
    save_checkpoint(folder / "denoise.safetensors", model, metadata={**metadata, "inference_stats": "local"})
    assert (
        restore_cli.main([str(src), str(tmp_path / "z.png"), "--task", "denoise", "--tile", "32", "--overlap", "8"])
        == 0
    )
    expected = restore(loaded, load_image(src).pixels, stats="local", train_patch=16, tile=32, overlap=8)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "z.png")), np.rint(expected * 255).astype(np.uint8))


def test_an_assumed_training_patch_is_said_in_the_commands_own_words(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "models"
    metadata = {"task": "denoise", "inference_stats": "local", "inference_stats_reason": "test"}  # no train_patch
    save_checkpoint(folder / "denoise.safetensors", create_model("tiny_half_instance"), metadata=metadata)
    monkeypatch.setattr(restore_cli, "DEFAULT_MODELS_DIR", folder)
    src = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(src)
    assert restore_cli.main([str(src), str(tmp_path / "out.png"), "--task", "denoise"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith("; training patch assumed 64 px (the checkpoint does not record it)")
    assert "--train-patch" not in line  # evaluate's option: this command has none


def test_python_m_restore_warnings_go_through_the_configured_logger(tmp_path):
    """Under `python -m` the module is "__main__": its warnings must still be prefixed and -qq must hide them."""
    src = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(src)
    command = [sys.executable, "-m", "hinet.restore", str(src), str(tmp_path / "o.png"), "--task", "denoise"]
    command += ["--variant", "tiny_half_instance"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    loud = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert loud.returncode == 0 and loud.stderr.startswith("warning: --variant tiny_half_instance builds an UNTRAINED")
    quiet = subprocess.run([*command, "-qq"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.parametrize("task", ["denoise", "jpeg"])
def test_a_shipped_model_restores_16_bit_and_rgba_images_through_the_cli(task, tmp_path):
    if not (SHIPPED_MODELS_DIR / f"{task}.safetensors").is_file():
        pytest.fail(f"results/models/{task}.safetensors is not shipped")
    rgba = np.random.default_rng(1).integers(0, 256, (40, 48, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    gray16 = (np.arange(40 * 48, dtype=np.uint16).reshape(40, 48) * 30).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    for name in ("rgba", "gray16"):
        assert restore_cli.main([str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}_out.png"), "--task", task]) == 0
    out = np.asarray(Image.open(tmp_path / "rgba_out.png"))
    assert out.shape == (40, 48, 4) and np.array_equal(out[:, :, 3], rgba[:, :, 3])
    restored16 = load_image(tmp_path / "gray16_out.png")
    assert restored16.bit_depth == 16 and restored16.was_gray


def test_the_command_records_the_choice_and_keeps_the_weights(tmp_path, monkeypatch, capsys):
    from safetensors.torch import load_file

    monkeypatch.setattr(stats_choice, "validation_pairs", lambda task: _pairs(size=64))
    torch.manual_seed(0)
    path = save_checkpoint(
        tmp_path / "m.safetensors",
        create_model("tiny_half_instance"),
        metadata={"task": "denoise", "train_patch": 32, "steps": 7},
        dtype=torch.float16,
    )
    before = load_file(path)
    assert stats_choice.main([str(path), "--write"]) == 0
    after = load_file(path)
    assert all(torch.equal(before[k], after[k]) and after[k].dtype == torch.float16 for k in before)
    metadata = read_metadata(path)
    assert metadata["steps"] == 7 and metadata["inference_stats"] in ("whole", "tiled", "local")
    assert "recorded in" in capsys.readouterr().out
    assert stats_choice.main([str(tmp_path / "missing.safetensors")]) == 2
