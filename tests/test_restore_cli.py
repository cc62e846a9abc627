import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import hinet.restore as restore_cli
from hinet.checkpoint import save_checkpoint
from hinet.image import load_image
from hinet.inference import restore
from hinet.registry import create_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def model_dir(tmp_path, monkeypatch):
    """A default-model folder holding a tiny 'denoise' checkpoint."""
    torch.manual_seed(0)
    folder = tmp_path / "models"
    save_checkpoint(folder / "denoise.safetensors", create_model("tiny_half_instance"), metadata={"task": "denoise"})
    monkeypatch.setattr(restore_cli, "DEFAULT_MODELS_DIR", folder)
    return folder


def write_rgb(path: Path, h=20, w=28, seed=0, mode="RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    Image.fromarray(array, mode).save(path)
    return array


def test_file_uses_default_checkpoint_and_matches_restore(tmp_path, model_dir):
    src = tmp_path / "in.png"
    write_rgb(src)
    dst = tmp_path / "out.png"
    assert restore_cli.main([str(src), str(dst), "--task", "denoise"]) == 0
    written = np.asarray(Image.open(dst))
    assert written.shape == (20, 28, 3) and written.dtype == np.uint8

    from hinet.checkpoint import load_checkpoint

    model, _ = load_checkpoint(model_dir / "denoise.safetensors")
    expected = np.rint(restore(model, load_image(src).pixels) * 255).astype(np.uint8)
    assert np.array_equal(written, expected)


def test_alpha_and_16_bit_are_kept(tmp_path, model_dir):
    src = tmp_path / "rgba.png"
    rgba = write_rgb(src, mode="RGBA")
    dst = tmp_path / "rgba_out.png"
    assert restore_cli.main([str(src), str(dst), "--task", "denoise", "--tile", "8", "--overlap", "2"]) == 0
    out = np.asarray(Image.open(dst))
    assert out.shape == (20, 28, 4)
    assert np.array_equal(out[:, :, 3], rgba[:, :, 3])

    src16 = tmp_path / "gray16.png"
    Image.fromarray(np.arange(16 * 24, dtype=np.uint16).reshape(16, 24) * 150).save(src16)
    assert load_image(src16).bit_depth == 16
    dst16 = tmp_path / "gray16_out.png"
    assert restore_cli.main([str(src16), str(dst16), "--task", "denoise"]) == 0
    reloaded = load_image(dst16)
    assert reloaded.bit_depth == 16 and reloaded.was_gray


def test_folder_reports_bad_file_and_writes_the_rest(tmp_path, model_dir, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    write_rgb(folder / "a.png", seed=1)
    write_rgb(folder / "b.jpg", seed=2)
    (folder / "broken.png").write_bytes(b"this is not a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    out = tmp_path / "outputs"
    code = restore_cli.main([str(folder), str(out), "--task", "denoise"])
    assert code == 2
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    err = capsys.readouterr().err
    assert "1 of 3 image(s) failed" in err and "broken.png" in err
    assert "Traceback" not in err


def test_missing_default_checkpoint_exits_2_with_instructions(tmp_path):
    src = tmp_path / "in.png"
    write_rgb(src)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # A task whose shipped model does not exist in a fresh checkout is not guaranteed, so point the
    # module at an empty folder through a tiny wrapper script instead of relying on results/.
    script = (
        "import sys, hinet.restore as r, pathlib; r.DEFAULT_MODELS_DIR = pathlib.Path(sys.argv[1]);"
        "sys.exit(r.main(sys.argv[2:]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "empty"), str(src), str(tmp_path / "o.png"), "--task", "deblur"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert "deblur.safetensors is missing" in result.stderr
    assert "python -m hinet.train --config configs/deblur_small.yaml" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_untrained_variant_warns_loudly(tmp_path, capsys):
    src = tmp_path / "in.png"
    write_rgb(src)
    out = tmp_path / "out"
    out.mkdir()
    assert restore_cli.main([str(src), str(out), "--task", "jpeg", "--variant", "tiny_none"]) == 0
    assert (out / "in.png").exists()  # an output folder receives <stem>.png
    assert "UNTRAINED" in capsys.readouterr().err


def test_refuses_to_overwrite_the_input(tmp_path, capsys):
    src = tmp_path / "in.png"
    before = write_rgb(src)
    assert restore_cli.main([str(src), str(tmp_path), "--task", "jpeg", "--variant", "tiny_none"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert np.array_equal(np.asarray(Image.open(src)), before)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checkpoint", "nope.safetensors"], "checkpoint not found"),
        (["--variant", "no_such_variant"], "unknown variant"),
    ],
)
def test_bad_model_options_exit_2(tmp_path, capsys, extra, message):
    src = tmp_path / "in.png"
    write_rgb(src)
    assert restore_cli.main([str(src), str(tmp_path / "o.png"), "--task", "denoise", *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_bad_output_name_exit_2(tmp_path, model_dir, capsys):
    src = tmp_path / "in.png"
    write_rgb(src)
    assert restore_cli.main([str(src), str(tmp_path / "o.jpg"), "--task", "denoise"]) == 2
    assert ".png" in capsys.readouterr().err


def test_official_pth_checkpoint_is_accepted(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny_half_instance").eval()
    checkpoint = tmp_path / "official.pth"
    torch.save({"params": model.state_dict()}, checkpoint)
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    write_rgb(src)
    assert restore_cli.main([str(src), str(dst), "--task", "denoise", "--checkpoint", str(checkpoint)]) == 0
    expected = np.rint(restore(model, load_image(src).pixels) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(dst)), expected)


def test_an_animated_input_is_restored_from_its_first_frame_with_a_warning(tmp_path, model_dir, capsys):
    frames = [Image.new("RGB", (24, 16), color) for color in ((200, 30, 30), (30, 30, 200))]
    src = tmp_path / "moving.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=100)
    assert restore_cli.main([str(src), str(tmp_path / "out.png"), "--task", "denoise"]) == 0
    assert (
        "warning: moving.gif is an animated GIF with 2 frames; only the first frame is used" in capsys.readouterr().err
    )
    assert restore_cli.main([str(src), str(tmp_path / "out.png"), "--task", "denoise", "-qq"]) == 0
    assert "animated" not in capsys.readouterr().err  # -qq: errors only
