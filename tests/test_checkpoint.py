"""hinet.checkpoint: safetensors round trips, refusing damaged or unsafe files, mismatch diagnoses."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import hinet.checkpoint as checkpoint_module
from hinet.checkpoint import (
    MAX_PARAMETERS,
    infer_config_from_state_dict,
    load_checkpoint,
    load_official_checkpoint,
    load_state_dict_checked,
    read_metadata,
    save_checkpoint,
)
from hinet.errors import CheckpointError
from hinet.model import HINet, HINetConfig
from hinet.registry import VARIANTS, create_model, get_config


def randomized(model: HINet, seed: int = 0) -> HINet:
    """Perturb every float tensor (norm gamma/beta too), so a loader that skips one is caught."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return model


def assert_same_weights(a: HINet, b: HINet):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def diagnosis(checkpoint_variant: str, model_variant: str, **model_overrides) -> str:
    trained = create_model(checkpoint_variant)
    model = create_model(model_variant, **model_overrides)
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_checked(model, trained.state_dict())
    return str(caught.value)


# ----------------------------------------------------------------------------------------------------
# Round trips


def test_fp32_round_trip_is_exact_and_rebuilds_the_model(tmp_path):
    model = randomized(create_model("tiny_half_instance", norm_ratio=0.25, hin_position_left=1))
    metadata = {
        "task": "denoise",
        "steps": 120,
        "test_psnr": 27.5,
        "trained": "true",
        "levels": [15, 25],
        "extra": {"a": None},
    }
    path = save_checkpoint(tmp_path / "model.safetensors", model, metadata=metadata)
    loaded, read = load_checkpoint(path)
    assert loaded.config == model.config
    assert not loaded.training
    assert_same_weights(loaded, model)
    for key, value in metadata.items():
        assert read[key] == value
    assert read["config"] == model.config.to_dict()
    assert read_metadata(path) == read
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(image)[1], model.eval()(image)[1])
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left behind


def test_batch_norm_buffers_round_trip(tmp_path):
    model = create_model("tiny_batch").train()
    model(torch.rand(2, 3, 16, 16))  # moves the running statistics away from their defaults
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "bn.safetensors", model))
    assert_same_weights(loaded, model)
    assert loaded.down_path_1[0].norm.num_batches_tracked.item() == 1


def test_fp16_saving_halves_the_file_and_loads_back_close(tmp_path):
    model = randomized(create_model("tiny_half_instance"))
    full = save_checkpoint(tmp_path / "full.safetensors", model)
    half = save_checkpoint(tmp_path / "half.safetensors", model, dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    with safe_open(str(half), framework="pt") as handle:
        assert handle.get_tensor("conv_01.weight").dtype == torch.float16
    loaded, _ = load_checkpoint(half)
    for key, tensor in loaded.state_dict().items():
        assert tensor.dtype == torch.float32
        torch.testing.assert_close(tensor, model.state_dict()[key], atol=2e-3, rtol=1e-3)


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, create_model("tiny_none"), metadata={"version": 1})
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_file", disk_full)
    with pytest.raises(OSError):
        save_checkpoint(path, create_model("tiny_none"), metadata={"version": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_save_refuses_bad_metadata_and_non_finite_weights(tmp_path):
    model = create_model("tiny_none")
    with pytest.raises(CheckpointError, match="reserved"):
        save_checkpoint(tmp_path / "a.safetensors", model, metadata={"config": {}})
    with pytest.raises(CheckpointError, match="cannot be stored as JSON"):
        save_checkpoint(tmp_path / "a.safetensors", model, metadata={"when": object()})
    with torch.no_grad():
        model.last.bias[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "a.safetensors", model)
    with torch.no_grad():
        model.last.bias[0] = 1e6  # finite in float32, infinite in float16
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "a.safetensors", model, dtype=torch.float16)
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------------------------------
# Damaged files


@pytest.fixture
def saved(tmp_path) -> Path:
    return save_checkpoint(
        tmp_path / "model.safetensors", create_model("tiny_half_instance"), metadata={"task": "jpeg"}
    )


def test_missing_empty_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing.safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(2000))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(garbage)


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) - 500])
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def test_tampered_header(saved):
    data = bytearray(saved.read_bytes())
    header_length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + header_length].decode()
    tampered = header.replace('"data_offsets":[0,', '"data_offsets":[4,', 1)
    assert tampered != header
    data[8 : 8 + header_length] = tampered.encode()
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def write_raw(path: Path, tensors: dict, metadata: dict) -> Path:
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_bad_config_metadata(tmp_path):
    model = create_model("tiny_none")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    not_json = write_raw(tmp_path / "a.safetensors", tensors, {"config": "{wf: 8"})
    with pytest.raises(CheckpointError, match="damaged model config"):
        load_checkpoint(not_json)
    unknown_key = write_raw(
        tmp_path / "b.safetensors", tensors, {"config": json.dumps({**model.config.to_dict(), "use_hin": 1})}
    )
    with pytest.raises(CheckpointError, match="invalid model config.*use_hin"):
        load_checkpoint(unknown_key)
    impossible = write_raw(
        tmp_path / "c.safetensors", tensors, {"config": json.dumps({**model.config.to_dict(), "depth": 0})}
    )
    with pytest.raises(CheckpointError, match="depth must be at least 2"):
        load_checkpoint(impossible)
    no_config = write_raw(tmp_path / "d.safetensors", tensors, {"task": '"jpeg"'})
    with pytest.raises(CheckpointError, match="no model config"):
        load_checkpoint(no_config)


def test_non_finite_weights_in_file(tmp_path):
    model = create_model("tiny_half_instance")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["down_path_1.0.norm.weight"][1] = float("inf")
    path = write_raw(tmp_path / "inf.safetensors", tensors, {"config": json.dumps(model.config.to_dict())})
    with pytest.raises(
        CheckpointError, match=r"NaN or infinite weights in 1 tensor\(s\) \(down_path_1.0.norm.weight\)"
    ):
        load_checkpoint(path)


def test_config_that_does_not_match_the_tensors(tmp_path):
    model = create_model("tiny_half_instance")
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    wrong = {**model.config.to_dict(), "wf": 16}
    path = write_raw(tmp_path / "wrong.safetensors", tensors, {"config": json.dumps(wrong)})
    with pytest.raises(CheckpointError, match="wf=8"):
        load_checkpoint(path)


# ----------------------------------------------------------------------------------------------------
# Official checkpoints


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"params": sd},
        lambda sd: {"state_dict": sd},
        lambda sd: sd,
        lambda sd: {"params": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["params", "state_dict", "bare", "module_prefix"],
)
def test_official_checkpoint_layouts(tmp_path, wrap):
    model = randomized(create_model("tiny_half_instance", hin_position_left=1))
    path = tmp_path / "official.pth"
    torch.save(wrap(model.state_dict()), path)
    with_config = load_official_checkpoint(path, model.config)
    assert_same_weights(with_config, model)
    inferred = load_official_checkpoint(path)  # config read back from the weights
    assert inferred.config == model.config
    assert_same_weights(inferred, model)


class CreatesFileWhenUnpickled:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    torch.save({"params": create_model("tiny_none").state_dict(), "payload": CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(CheckpointError, match="refused to load evil.pth"):
        load_official_checkpoint(path)
    assert not marker.exists()
    # The payload is live: an unsafe load would have created the file.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_official_file_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a state dict"):
        load_official_checkpoint(path)
    path = tmp_path / "mixed.pth"
    torch.save({"conv_01.weight": torch.zeros(8, 3, 3, 3), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match="'epoch' is a int"):
        load_official_checkpoint(path)
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="no conv_01.weight"):
        load_official_checkpoint(path)
    path = tmp_path / "broken.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_official_checkpoint(path)


# ----------------------------------------------------------------------------------------------------
# Config inference and mismatch diagnoses


# Layer and group norm have the same keys as instance norm, norm="none" has no placement to read, and a
# norm without affine parameters leaves no keys at all.
INFERABLE = [name for name in VARIANTS if not name.endswith(("_layer", "_group", "_none", "_noaffine"))]


@pytest.mark.parametrize("name", INFERABLE)
def test_infer_config_from_state_dict(name):
    config = get_config(name)
    with torch.device("meta"):
        model = HINet(config)
    assert infer_config_from_state_dict(model.state_dict()) == config


def test_infer_config_for_ambiguous_norms():
    layer = infer_config_from_state_dict(create_model("tiny_layer").state_dict())
    assert layer.norm == "instance" and layer.ratio == 1.0
    none = infer_config_from_state_dict(create_model("tiny_none").state_dict())
    assert none.norm == "none" and (none.wf, none.depth) == (8, 3)
    no_affine = infer_config_from_state_dict(create_model("small_hin_noaffine").state_dict())
    assert no_affine.norm == "none"  # invisible in the weights: the documented limitation


def test_diagnosis_wrong_hin_positions():
    # trained with HIN at levels 0-3 (small_hin); the model normalizes only levels 2-3 (small_hin_deep)
    message = diagnosis("small_hin", "small_hin_deep")
    assert "norm keys at levels 0-1 are unexpected" in message
    assert "hin_position_left=0, hin_position_right=3" in message
    assert "the model normalizes levels 2-3 (hin_position_left=2" in message
    assert "8 key(s) unexpected in the checkpoint:" in message
    assert "down_path_1.0.norm.weight" in message


def test_diagnosis_wrong_wf():
    message = diagnosis("tiny_half_instance", "tiny_half_instance", wf=16)
    assert "conv_01 has 8 output channels in the checkpoint: it was trained with wf=8 (the model has wf=16)" in message
    assert "down_path_1.0.identity.weight: the checkpoint has [8, 8, 1, 1], the model has [16, 16, 1, 1]" in message
    assert "... and" in message and "more" in message  # long key lists are truncated with a count


def test_diagnosis_wrong_depth():
    message = diagnosis("tiny_half_instance", "tiny_half_instance", depth=4)
    assert "down_path_1.3 is missing in the checkpoint: it was trained with depth=3 (the model has depth=4)" in message
    message = diagnosis("small_hin", "small_hin", depth=3, hin_position_right=2)
    assert "down_path_1.3 is present in the checkpoint: it was trained with depth=4 (the model has depth=3)" in message


def test_diagnosis_batch_versus_instance():
    message = diagnosis("tiny_batch", "tiny_instance")
    assert "running_mean/running_var keys: it was trained with norm='batch' (the model has norm='instance')" in message
    message = diagnosis("tiny_instance", "tiny_batch")
    assert "the checkpoint has no running statistics" in message


def test_diagnosis_norm_ratio_and_decoder_norms():
    message = diagnosis("small_hin", "small_hin_r0.25")
    assert (
        "norm.weight normalizes 8 of 16 channels in the checkpoint: it was trained with norm_ratio=0.5 (the model has 0.25)"
        in message
    )
    message = diagnosis("small_hin_encdec", "small_hin")
    assert "Decoder norm keys (up_path_*.conv_block.norm) are unexpected" in message
    assert "norm_in_decoder=True" in message


def test_diagnosis_suggests_the_fitting_config():
    message = diagnosis("small_hin_deep", "small_hin")
    assert "The weights fit HINetConfig(wf=16, depth=4, hin_position_left=2, hin_position_right=3)" in message


def test_matching_state_dict_loads():
    trained = randomized(create_model("tiny_group"))
    model = create_model("tiny_group")
    load_state_dict_checked(model, trained.state_dict())
    assert_same_weights(model, trained)


# ----------------------------------------------------------------------------------------------------
# load_any_checkpoint: one entry point for both formats


def test_load_any_checkpoint_reads_an_official_pth_and_infers_its_config(tmp_path):
    from hinet.checkpoint import load_any_checkpoint

    model = randomized(create_model("tiny_half_instance"))
    path = tmp_path / "official.pth"
    torch.save({"params": model.state_dict()}, path)
    loaded, metadata = load_any_checkpoint(path)
    assert_same_weights(model, loaded)
    assert not loaded.training
    assert metadata == {
        "config": model.config.to_dict(),
        "task": None,
        "trained": "true",
        "source": "official .pth",
        "train_patch": 256,
    }


def test_load_any_checkpoint_reads_our_safetensors_with_its_metadata(tmp_path):
    from hinet.checkpoint import load_any_checkpoint

    model = randomized(create_model("tiny_half_instance"))
    path = save_checkpoint(tmp_path / "ours.safetensors", model, metadata={"task": "denoise"})
    loaded, metadata = load_any_checkpoint(path)
    assert_same_weights(model, loaded)
    assert metadata["task"] == "denoise" and metadata["config"] == model.config.to_dict()


def test_a_safetensors_without_config_is_refused_or_rebuilt_from_its_weights(tmp_path):
    from hinet.checkpoint import load_any_checkpoint

    model = randomized(create_model("tiny_half_instance", norm_ratio=0.25))
    path = tmp_path / "bare.safetensors"
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError, match="has no model config in its metadata"):
        load_any_checkpoint(path)
    loaded, metadata = load_any_checkpoint(path, infer_config=True)
    assert loaded.config == model.config and metadata["config"] == model.config.to_dict()
    assert metadata["source"] == "config inferred from the weights"
    assert_same_weights(model, loaded)


def test_load_any_checkpoint_refuses_a_damaged_pth(tmp_path):
    from hinet.checkpoint import load_any_checkpoint

    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a pytorch file")
    with pytest.raises(CheckpointError, match="broken.pt"):
        load_any_checkpoint(path)


def test_mismatch_message_describes_the_model_config(tmp_path):
    model = create_model("tiny_half_instance")
    other = create_model("tiny_instance")
    with pytest.raises(CheckpointError) as caught:
        load_state_dict_checked(other, model.state_dict())
    assert f"does not fit this model ({other.config.describe()})" in str(caught.value)


def test_saved_checkpoint_has_normal_permissions_and_no_temp_left(tmp_path):
    previous = os.umask(0o022)
    try:
        import hinet.io

        hinet.io._umask = None
        path = save_checkpoint(tmp_path / "m.safetensors", create_model("tiny_half_instance"))
    finally:
        os.umask(previous)
        hinet.io._umask = None
    assert (path.stat().st_mode & 0o777) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize(
    "config, words",
    [
        ({"wf": 100000, "depth": 40}, "wf must be at most 256"),
        ({"wf": 256, "depth": 8}, "parameters"),
    ],
)
def test_a_config_asking_for_an_absurd_model_is_refused_before_allocating(tmp_path, config, words):
    path = tmp_path / "absurd.safetensors"
    save_file({"conv_01.weight": torch.zeros(1)}, str(path), metadata={"config": json.dumps(config)})
    with pytest.raises(CheckpointError, match=words) as caught:
        load_checkpoint(path)
    assert "absurd.safetensors" in str(caught.value)
    if words == "parameters":
        assert f"limit of {MAX_PARAMETERS:,}" in str(caught.value)


def test_an_official_file_with_an_absurd_config_is_refused_before_allocating(tmp_path):
    path = tmp_path / "official.pth"
    torch.save({"params": {"conv_01.weight": torch.zeros(1)}}, path)
    with pytest.raises(CheckpointError, match="more than the limit"):
        load_official_checkpoint(path, config=HINetConfig(wf=256, depth=8))
    torch.save({"params": {"conv_01.weight": torch.zeros(100000, 3, 1, 1)}}, path)  # infers wf=100000
    with pytest.raises(CheckpointError, match="wf must be at most 256"):
        load_official_checkpoint(path)


def test_the_paper_model_is_within_the_size_limit():
    assert HINetConfig().parameter_count() < MAX_PARAMETERS / 5
