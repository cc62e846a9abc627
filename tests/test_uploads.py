"""app.uploads and the store's session view: an uploaded checkpoint is checked before anything is kept, and
only the session that uploaded it lists and resolves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import app.uploads as uploads_module
from app.models import SessionUploads
from app.uploads import MAX_UPLOADS, add_upload, delete_uploads, upload_name, uploads_markdown
from app_harness import tiny_store
from hinet.checkpoint import save_checkpoint
from hinet.errors import CheckpointError, ConfigError, HINetError
from hinet.registry import create_model
from test_checkpoint import CreatesFileWhenUnpickled


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads_module, "UPLOADS_ROOT", str(tmp_path))  # the sessions' folders go with the test
    return tiny_store(tmp_path / "runs")


@pytest.fixture
def ours(tmp_path) -> Path:
    """A trained-looking checkpoint of this project for the denoise task."""
    model = create_model("tiny_half_instance")
    return save_checkpoint(tmp_path / "mine.safetensors", model, {"task": "denoise", "trained": True})


@pytest.fixture
def official(tmp_path) -> Path:
    path = tmp_path / "HINet-tiny.pth"
    torch.save({"params": create_model("tiny_instance").state_dict()}, path)
    return path


def test_an_uploaded_checkpoint_is_listed_and_resolved_by_its_own_session_only(store, ours):
    uploads, message = add_upload(store, None, ours, "mine")
    assert "uploads/mine" in message and "denoise" in message and "this browser session only" in message
    session = store.for_session(uploads)
    listed = {e.id: e for e in session.list_entries("denoise")}
    assert "uploads/mine" in listed and "uploaded" in listed["uploads/mine"].label
    assert listed["uploads/mine"].trained and listed["uploads/mine"].source == "uploaded"
    assert "uploads/mine" not in [e.id for e in session.list_entries("deblur")]  # trained for another task
    model = session.get_model("uploads/mine")
    assert not model.training and model.config == create_model("tiny_half_instance").config
    assert session.train_patch_of("uploads/mine")[0] > 0
    # The shared store and every other session neither list nor resolve it.
    for other in (store, store.for_session(None), store.for_session(SessionUploads())):
        assert "uploads/mine" not in [e.id for e in other.list_entries()]
        with pytest.raises(ConfigError, match="unknown model 'uploads/mine'.*session that uploaded it"):
            other.find_entry("uploads/mine")
    # The session's default stays the shipped/untrained default: an upload is chosen, not imposed.
    assert session.default_entry(session.list_entries("denoise"), "denoise").source != "uploaded"


def test_an_official_pth_and_a_bare_safetensors_get_their_config_from_the_weights(store, official, tmp_path):
    uploads, message = add_upload(store, None, official)
    assert "official HINet file, config inferred from the weights" in message
    entry = uploads.get("uploads/HINet-tiny")
    assert entry.task is None and entry.trained  # listed for every task
    assert entry.config.norm == "instance"
    for task in ("denoise", "deblur"):
        assert "uploads/HINet-tiny" in [e.id for e in store.for_session(uploads).list_entries(task)]

    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in create_model("tiny_half_instance").state_dict().items()}, str(bare))
    uploads, message = add_upload(store, uploads, bare)
    assert "config inferred from the weights" in message and "untrained" in message
    assert [e.id for e in uploads.entries] == ["uploads/HINet-tiny", "uploads/bare"]
    assert store.for_session(uploads).get_model("uploads/bare").config.norm == "half_instance"


def test_the_malicious_pickle_is_refused_and_runs_nothing(store, tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"params": create_model("tiny_none").state_dict(), "payload": CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load evil.pth: it contains Python objects"):
        add_upload(store, None, path)
    assert not marker.exists()


def _refusal(store, path) -> str:
    with pytest.raises(HINetError) as caught:
        add_upload(store, None, path)
    return str(caught.value)


def test_damaged_foreign_and_misnamed_files_are_refused_with_one_clear_message(store, ours, official, tmp_path):
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(ours.read_bytes()[: ours.stat().st_size // 2])
    assert "damaged or truncated" in _refusal(store, truncated)
    truncated_pth = tmp_path / "cut.pth"
    truncated_pth.write_bytes(official.read_bytes()[:200])
    assert "damaged or truncated" in _refusal(store, truncated_pth)

    resnet = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "conv1.weight": torch.zeros(8, 3, 7, 7)}, resnet)
    assert _refusal(store, resnet) == (
        "refused resnet.pth: this is not a HINet state dict: it has no conv_01.weight (the first 3x3 conv)"
    )
    foreign = tmp_path / "foreign.safetensors"
    save_file({"encoder.weight": torch.zeros(4, 4)}, str(foreign))
    assert "not a HINet state dict" in _refusal(store, foreign)

    renamed = tmp_path / "mine.ckpt"
    renamed.write_bytes(ours.read_bytes())
    assert "refused mine.ckpt: a checkpoint must be a .safetensors file" in _refusal(store, renamed)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert "empty" in _refusal(store, empty)


def test_an_oversized_file_is_refused_before_it_is_read(store, ours, monkeypatch):
    monkeypatch.setattr(uploads_module, "MAX_UPLOAD_BYTES", ours.stat().st_size - 1)

    def must_not_read(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(uploads_module, "load_any_checkpoint", must_not_read)
    assert "more than the limit of 400 MB" in _refusal(store, ours)


def test_names_replacing_and_the_per_session_limit(store, ours, official):
    assert upload_name("", "/tmp/HINet SIDD (1x).pth") == "HINet_SIDD_1x"
    for bad in ("../etc", "a/b", "x" * 41, "-lead"):
        with pytest.raises(ConfigError, match="cannot be used"):
            upload_name(bad, ours)
    uploads, _ = add_upload(store, None, ours, "a")
    first = store.for_session(uploads).get_model("uploads/a")
    uploads, _ = add_upload(store, uploads, official, "a")  # the same name replaces the upload, file and model
    assert [e.id for e in uploads.entries] == ["uploads/a"]
    assert sorted(p.name for p in Path(uploads.folder).iterdir()) == ["a.pth"]
    assert store.for_session(uploads).get_model("uploads/a") is not first
    for index in range(1, MAX_UPLOADS):
        uploads, _ = add_upload(store, uploads, ours, f"n{index}")
    with pytest.raises(ConfigError, match=f"already holds {MAX_UPLOADS} uploaded models"):
        add_upload(store, uploads, ours, "one_more")
    assert "uploads/n1" in uploads_markdown(uploads) and "No uploaded" in uploads_markdown(None)
    folder = Path(uploads.folder)
    delete_uploads(uploads)
    assert not folder.exists()
