import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import threading  # noqa: E402  after the environment default above
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from hinet import data  # noqa: E402


@pytest.fixture(autouse=True)
def _no_first_view_outlives_its_test(monkeypatch):  # joined before monkeypatch restores HINET_CACHE
    """Building the restore tab precomputes its first view in a thread (`first-view`); one left running would
    write its example into whatever cache folder a later test points `HINET_CACHE` at."""
    yield
    for thread in threading.enumerate():
        if thread.name == "first-view":
            thread.join(timeout=300)


@pytest.fixture
def small_sweep_world(tmp_path, monkeypatch):
    """Hermetic sweeps: a private cache, one thread and two small synthetic test images."""
    monkeypatch.setenv("HINET_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)
    # Two small synthetic "test images" instead of sporco's 768 x 512 ones keep evaluation fast.
    rng = np.random.default_rng(0)
    small = {
        "checker": np.kron(rng.random((4, 4, 3)), np.ones((16, 16, 1))).astype(np.float32),
        "gradient": np.repeat(np.linspace(0, 1, 48, dtype=np.float32)[None, :, None], 40, 0).repeat(3, 2),
    }
    monkeypatch.setattr(data, "test_images", lambda: dict(small))


@pytest.fixture
def grid_file(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    from hinet.image import save_image

    for name in ("astronaut", "coffee", "chelsea"):
        save_image(folder / f"{name}.png", np.ascontiguousarray(data.skimage_images()[name][:64, :64]))
    grid = {
        "ablation": "mini",
        "budget": "8 steps of a tiny model",
        "baseline": "hin",
        "seeds": [0],
        "tasks": [{"task": "denoise", "strength": {"sigma": 25}}],
        "variants": [
            {"name": "hin", "variant": "tiny_half_instance"},
            {"name": "none", "variant": "tiny_half_instance", "model": {"norm": "none"}},
        ],
        "base": {
            "data": {
                "skimage": False,
                "pywt": False,
                "dead_leaves": 6,
                "dead_leaves_size": 64,
                "scales": [1.0],
                "folder": str(folder),
                "patch": 32,
                "batch": 2,
                "val_images": 1,
                "val_size": 32,
            },
            "steps": 8,
            "val_every": 4,
            "checkpoint_every": 4,
            "progress": False,
        },
    }
    path = tmp_path / "ablation_mini.yaml"
    path.write_text(yaml.safe_dump(grid))
    return path
