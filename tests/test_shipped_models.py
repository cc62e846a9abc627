"""The weights shipped under results/models: loadable, self-describing, and actually trained."""

from pathlib import Path

import numpy as np
import pytest

from hinet.checkpoint import load_checkpoint, read_metadata
from hinet.data import degrade, test_images
from hinet.inference import restore
from hinet.metrics import psnr
from hinet.tasks import TASKS

MODELS = Path(__file__).resolve().parents[1] / "results" / "models"
SHIPPED = sorted(MODELS.glob("*.safetensors"))


def test_a_default_denoiser_is_shipped():
    assert (MODELS / "denoise.safetensors").is_file(), "results/models/denoise.safetensors is missing"


def test_every_task_with_shipped_weights_has_its_default_file():
    """`python -m hinet.restore --task T` and the app load results/models/T.safetensors; a comparison
    variant (T_suffix) must not be shipped without it."""
    tasks = {read_metadata(path)["task"] for path in SHIPPED}
    missing = sorted(task for task in tasks if not (MODELS / f"{task}.safetensors").is_file())
    assert not missing, f"comparison variants shipped without a default model for: {missing}"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_weights_load_and_describe_themselves(path):
    metadata = read_metadata(path)
    task = metadata["task"]
    assert task in TASKS and (path.stem == task or path.stem.startswith(f"{task}_"))
    assert metadata["trained"] == "true" and int(metadata["steps"]) > 0
    assert metadata["device"]
    model, full = load_checkpoint(path)
    assert full["config"] == model.config.to_dict()
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


def test_shipped_denoiser_beats_the_noisy_input_clearly():
    model, _ = load_checkpoint(MODELS / "denoise.safetensors")
    clean = test_images()["kodim23"][128:384, 256:512]  # a 256x256 crop of a test image, never trained on
    noisy = degrade(clean, "denoise", rng=np.random.default_rng(0), sigma=25)
    restored = restore(model, noisy)
    gain = psnr(restored, clean) - psnr(np.clip(noisy, 0, 1), clean)
    assert gain > 5.0, f"the shipped denoiser gains only {gain:.2f} dB over the noisy input"
