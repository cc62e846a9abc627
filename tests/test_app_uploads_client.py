"""Uploading checkpoints through the served app (gradio_client's /upload_checkpoint): an upload is usable by
its own session in every tab and unknown to a second client; unsafe, damaged, foreign, misnamed and oversized
files are refused with one clear message each, nothing in them runs, and the app keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app_harness import serve_tiny_app, tiny_store
from hinet.checkpoint import save_checkpoint
from hinet.image import save_image
from hinet.registry import create_model
from test_checkpoint import CreatesFileWhenUnpickled

pytestmark = pytest.mark.app

OVERSIZED_BYTES = 2_000_000  # the served app's upload limit here, so that one test file is over it


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("uploads")
    ours = save_checkpoint(folder / "mine.safetensors", create_model("tiny_half_instance"), {"task": "denoise"})
    evil = folder / "evil.pth"
    marker = folder / "pwned.txt"
    torch.save({"params": create_model("tiny_none").state_dict(), "payload": CreatesFileWhenUnpickled(marker)}, evil)
    truncated = folder / "cut.safetensors"
    truncated.write_bytes(ours.read_bytes()[: ours.stat().st_size // 2])
    foreign = folder / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "conv1.weight": torch.zeros(8, 3, 7, 7)}, foreign)
    misnamed = folder / "mine.txt"
    misnamed.write_bytes(ours.read_bytes())
    oversized = folder / "big.pth"
    oversized.write_bytes(b"\0" * (OVERSIZED_BYTES + 1))
    image = save_image(folder / "noisy.png", np.random.default_rng(0).random((48, 64, 3)).astype(np.float32))
    return dict(
        ours=ours,
        evil=evil,
        marker=marker,
        truncated=truncated,
        foreign=foreign,
        misnamed=misnamed,
        oversized=oversized,
        image=image,
    )


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    patches = {
        "uploads.MAX_UPLOAD_BYTES": OVERSIZED_BYTES,
        "uploads.UPLOADS_ROOT": str(tmp_path_factory.mktemp("sessions")),
    }
    with serve_tiny_app(tiny_store(tmp_path_factory.mktemp("runs")), **patches) as url:
        yield url


def _client(url):
    from gradio_client import Client

    return Client(url, verbose=False)


def _upload(client, path, name=""):
    from gradio_client import handle_file

    return client.predict(checkpoint=handle_file(str(path)), name=name, api_name="/upload_checkpoint")


def _restore(client, image, variant):
    from gradio_client import handle_file

    return client.predict(
        image=handle_file(str(image)),
        example=None,
        ground_truth=None,
        variants=[variant],
        task="denoise",
        degrade_first=False,
        api_name="/restore",
    )


def test_an_upload_is_used_by_its_own_session_and_unknown_to_a_second_client(app_url, files):
    from gradio_client.exceptions import AppError

    owner, stranger = _client(app_url), _client(app_url)
    status, listing = _upload(owner, files["ours"], "mine")
    assert "Added **uploads/mine**" in status and "this browser session only" in status
    assert "uploads/mine" in listing and "uploaded" in listing
    # Its own session restores with it and looks inside its blocks.
    output = _restore(owner, files["image"], "uploads/mine")
    assert output[3]["data"][0][0].startswith("mine")
    caption = owner.predict(entry_id="uploads/mine", api_name="/features_view")[2]
    assert "of example 'astronaut'" in caption
    # A second client cannot resolve the id, in either tab.
    with pytest.raises(AppError, match="unknown model 'uploads/mine'"):
        _restore(stranger, files["image"], "uploads/mine")
    with pytest.raises(AppError, match="unknown model 'uploads/mine'"):
        stranger.predict(entry_id="uploads/mine", api_name="/features_view")
    status, listing = _upload(stranger, files["ours"], "theirs")
    assert "uploads/theirs" in listing and "uploads/mine" not in listing


@pytest.mark.parametrize(
    "key, message",
    [
        ("evil", "refused to load evil.pth: it contains Python objects other than tensors"),
        ("truncated", "cut.safetensors is not a readable safetensors checkpoint (damaged or truncated)"),
        ("foreign", "refused resnet.pth: this is not a HINet state dict"),
        ("misnamed", "Invalid file type"),
        ("oversized", "refused big.pth: it is 2 MB, more than the limit"),
    ],
)
def test_refused_files_say_why_run_nothing_and_the_app_keeps_serving(app_url, files, key, message):
    from gradio_client.exceptions import AppError

    client = _client(app_url)
    with pytest.raises(AppError) as caught:
        _upload(client, files[key])
    assert message in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert not files["marker"].exists()  # the pickle's payload never ran
    status, _ = _upload(client, files["ours"], "after")  # the same session goes on uploading
    assert "uploads/after" in status
