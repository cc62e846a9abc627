"""Training: config validation, resume equivalence, failure handling (NaN, full disk), logs, DDP, learning."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import hinet.device
import hinet.runs
import hinet.trainer
import hinet.training_data
from hinet.checkpoint import load_checkpoint, read_metadata
from hinet.config import TrainConfig, apply_overrides, load_config
from hinet.errors import ConfigError, HINetError
from hinet.io import atomic_write_bytes
from hinet.train import main, train
from hinet.trainer import lr_factor, validation_scores, warmup_steps

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _hermetic(tmp_path, monkeypatch):
    monkeypatch.setenv("HINET_CACHE", str(tmp_path / "cache"))  # dead-leaves pools go to the test's folder
    torch.set_num_threads(1)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Three small natural images: one becomes the validation image, the rest train with dead leaves."""
    from hinet import data
    from hinet.image import save_image

    folder = tmp_path / "images"
    folder.mkdir()
    images = data.skimage_images()
    for name in ("astronaut", "coffee", "chelsea"):
        save_image(folder / f"{name}.png", np.ascontiguousarray(images[name][100:164, 100:164]))
    return folder


def tiny_overrides(tmp_path: Path, folder: Path, run_name: str = "run", steps: int = 12) -> list[str]:
    return [
        f"run_name={run_name}",
        f"out_dir={tmp_path / 'runs'}",
        "model.variant=tiny_half_instance",
        "data.skimage=false",
        "data.pywt=false",
        "data.dead_leaves=8",
        "data.dead_leaves_size=64",
        "data.scales=[1.0]",
        f"data.folder={folder}",
        "data.patch=32",
        "data.batch=2",
        "data.val_images=1",
        "data.val_size=32",
        f"steps={steps}",
        "val_every=4",
        "checkpoint_every=4",
        "log_every=1",
        "progress=false",
    ]


def tiny_config(tmp_path, folder, run_name="run", steps=12, extra=()) -> TrainConfig:
    return load_config(None, tiny_overrides(tmp_path, folder, run_name, steps) + list(extra))


def stop_after(k: int):
    """(on_event, should_stop) that stop a run cleanly once step k is done."""
    seen = [0]

    def on_event(event):
        if event["kind"] == "step":
            seen[0] = event["step"]

    return on_event, lambda: seen[0] >= k


def weights(path) -> dict:
    return load_file(str(path))


def assert_same_weights(path_a, path_b):
    a, b = weights(path_a), weights(path_b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs by {(a[key] - b[key]).abs().max().item()}"


# --------------------------------------------------------------------------------------------------
# Config


def test_unknown_key_names_the_key_and_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown config key data\.pach.*known keys under data:.*patch"):
        load_config(None, ["data.pach=64"])
    with pytest.raises(ConfigError, match="unknown config key learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1e-3})


def test_wrong_type_names_the_key_and_the_expected_type():
    with pytest.raises(ConfigError, match=r"data\.patch must be int; got 'big'"):
        load_config(None, ["data.patch=big"])
    with pytest.raises(ConfigError, match="bf16 must be bool"):
        load_config(None, ["bf16=1"])
    with pytest.raises(ConfigError, match="optimizer.betas must be list of float"):
        TrainConfig.from_dict({"optimizer": {"betas": 0.9}})
    with pytest.raises(ConfigError, match=r"model\.config\.wf must be int"):
        load_config(None, ["model.config.wf=wide"])
    with pytest.raises(ConfigError, match=r"model\.config has unknown keys: width"):
        load_config(None, ["model.config.width=8"])


def test_impossible_values_are_config_errors():
    for override, message in [
        ("steps=0", "steps must be at least 1"),
        ("device=tpu", "device must be"),
        ("loss.name=mse", "loss.name must be"),
        ("model.variant=nope", "unknown variant"),
        ("grad_clip=-1", "grad_clip"),
        ("data.scales=[2.0]", "data.scales"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])


def test_set_parses_yaml_scalars_and_nested_keys():
    cfg = load_config(
        None,
        [
            "optimizer.lr=5e-4",
            "bf16=true",
            "data.scales=[1, 0.5]",
            "model.variant=null",
            "model.config.wf=8",
            "model.config.depth=3",
            "strength.sigma=15",
            "run_name=x",
        ],
    )
    assert cfg.optimizer.lr == 5e-4 and cfg.bf16 is True and cfg.data.scales == [1.0, 0.5]
    assert cfg.model.variant is None and cfg.model_config().wf == 8 and cfg.model_config().depth == 3
    assert cfg.strength == {"sigma": 15}
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["steps"])


def test_yaml_file_and_overrides_combine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run_name: fromfile\nsteps: 7\noptimizer:\n  lr: 1e-3\n  betas: [0.9, 0.999]\n")
    cfg = load_config(path, ["steps=9"])
    assert (cfg.run_name, cfg.steps, cfg.optimizer.lr, cfg.optimizer.betas) == ("fromfile", 9, 1e-3, [0.9, 0.999])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


TRAIN_CONFIGS = sorted(
    p
    for p in (REPO / "configs").glob("*.yaml")
    if not p.name.startswith("ablation_")
    and not p.name.endswith("_base.yaml")
    and not p.name.endswith("_pilot.yaml")  # pilots, not TrainConfigs: tests/test_pilot_defaults.py
    # the task defaults extend what the pilots generate; before it exists, tests/test_pilot_defaults.py
    # loads them over files of its own
    and not (p.name.startswith("default_") and not (REPO / "configs" / "default_lr.yaml").exists())
)


def test_every_config_kind_is_shipped():
    names = {p.stem for p in TRAIN_CONFIGS}
    for task in ("denoise", "deblur", "derain", "jpeg"):
        assert {f"paper_{task}", f"{task}_small"} <= names
    assert "tiny_test" in names


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.data.patch % cfg.model_config().size_multiple == 0


def test_default_warmup_is_five_percent_of_the_steps():
    cfg = load_config(None, ["steps=300", "optimizer.lr=1e-3"])
    assert warmup_steps(cfg) == 15
    assert lr_factor(0, cfg) == pytest.approx(1 / 15) and lr_factor(14, cfg) == pytest.approx(1.0)
    assert warmup_steps(load_config(None, ["steps=300", "scheduler.warmup_steps=0"])) == 0
    with pytest.raises(ConfigError, match="warmup_steps"):
        load_config(None, ["scheduler.warmup_steps=-1"])


def test_photos_mode_is_checked_and_required_photos_name_the_package(monkeypatch, tmp_path, image_folder):
    from hinet import photos

    with pytest.raises(ConfigError, match="data.photos must be one of"):
        load_config(None, ["data.photos=always"])
    missing = [photos.Photo(**dict(p.__dict__, path=str(tmp_path / "absent.jpg"))) for p in photos.manifest()]
    monkeypatch.setattr(photos, "manifest", lambda split=None: [p for p in missing if split in (None, p.split)])
    with pytest.raises(ConfigError, match="apt-get install .*mate-backgrounds"):
        train(tiny_config(tmp_path, image_folder, extra=["data.photos=required"]))
    assert not (tmp_path / "runs" / "run" / "model.safetensors").exists()


def test_lr_schedule_warms_up_then_anneals_to_eta_min():
    cfg = load_config(None, ["steps=100", "optimizer.lr=1e-3", "scheduler.eta_min=1e-5", "scheduler.warmup_steps=10"])
    lrs = [cfg.optimizer.lr * lr_factor(step, cfg) for step in range(101)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[100] == pytest.approx(1e-5)


# --------------------------------------------------------------------------------------------------
# Runs, logs and resuming


def test_run_folder_log_and_checkpoint_metadata(tmp_path, image_folder):
    events = []
    result = train(tiny_config(tmp_path, image_folder), on_event=events.append)
    run = Path(result["run_dir"])
    assert {p.name for p in run.iterdir()} == {
        "config.yaml",
        "model.safetensors",
        "best.safetensors",
        "train_state.safetensors",
        "train_state.json",
        "log.jsonl",
        "data_sources.json",
    }
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))
    assert all(set(r) == {"step", "loss", "lr", "grad_norm", "val_psnr", "val_ssim", "wall"} for r in records)
    assert all(r["grad_norm"] > 0 for r in records)
    assert [r["step"] for r in records if r["val_psnr"] is not None] == [4, 8, 12]
    assert all(np.isfinite(r["loss"]) and r["lr"] > 0 for r in records)
    walls = [r["wall"] for r in records]
    assert walls == sorted(walls)

    kinds = [e["kind"] for e in events]
    assert kinds.count("step") == 12 and kinds.count("val") == 3 and kinds[-1] == "done"
    assert events[-1]["result"] == result
    metadata = read_metadata(run / "model.safetensors")
    assert metadata["task"] == "denoise" and metadata["strength"] == {"sigma": 25.0}
    assert metadata["steps"] == 12 and metadata["trained"] == "true" and metadata["seed"] == 0
    assert metadata["train_seconds"] > 0 and metadata["device"].startswith("cpu")
    assert metadata["train_patch"] == 32 and metadata["lr"] == pytest.approx(1e-3) and metadata["photos"] == "none"
    sources = json.loads((run / "data_sources.json").read_text())
    assert (
        sources["training"]["folder"] == ["astronaut.png@1", "coffee.png@1"] or len(sources["training"]["folder"]) == 2
    )
    assert sources["validation"]["source"] == "pool" and len(sources["validation"]["images"]) == 1
    assert sum(sources["area_share"].values()) == pytest.approx(1.0, abs=1e-3)
    model, _ = load_checkpoint(run / "model.safetensors")
    assert model.config.wf == 8
    assert result["step"] == 12 and not result["stopped"] and result["best_val_psnr"] >= result["val_psnr"] - 1e-9

    # A finished run has nothing left to do.
    again = train(tiny_config(tmp_path, image_folder))
    assert again["step"] == 12 and again["train_seconds"] == pytest.approx(result["train_seconds"])
    assert again["val_psnr"] == result["val_psnr"] and again["input_val_psnr"] == result["input_val_psnr"]

    # ... also on a fresh checkout, which lacks the git-ignored weights and optimizer state.
    for name in ("model.safetensors", "train_state.safetensors", "best.safetensors"):
        (run / name).unlink()
    fresh = train(tiny_config(tmp_path, image_folder))
    assert fresh["step"] == 12 and not fresh["stopped"] and fresh["best_val_psnr"] == result["best_val_psnr"]
    assert fresh["model_path"] is None and not (run / "model.safetensors").exists()


def test_run_cancelled_before_its_first_step_saves_nothing(tmp_path, image_folder):
    result = train(tiny_config(tmp_path, image_folder), should_stop=lambda: True)
    assert result["stopped"] and result["step"] == 0 and result["model_path"] is None
    assert not (tmp_path / "runs/run/model.safetensors").exists()


@pytest.mark.parametrize("precision", ["bf16=false", "bf16=true"])
def test_cancelled_then_resumed_run_equals_unbroken_run(tmp_path, image_folder, precision):
    extra = [precision, "grad_clip=0.5", "scheduler.warmup_steps=3"]
    train(tiny_config(tmp_path, image_folder, "unbroken", extra=extra))
    on_event, should_stop = stop_after(6)  # between checkpoints: the cancel itself must save
    stopped = train(
        tiny_config(tmp_path, image_folder, "resumed", extra=extra), on_event=on_event, should_stop=should_stop
    )
    assert stopped["stopped"] and stopped["step"] == 6
    assert json.loads((tmp_path / "runs/resumed/train_state.json").read_text())["step"] == 6
    resumed = train(tiny_config(tmp_path, image_folder, "resumed", extra=extra))
    assert resumed["step"] == 12 and not resumed["stopped"]
    assert_same_weights(tmp_path / "runs/unbroken/model.safetensors", tmp_path / "runs/resumed/model.safetensors")

    def losses(run):
        lines = (tmp_path / "runs" / run / "log.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines)]

    assert losses("unbroken") == losses("resumed")


def test_crashed_run_resumes_from_last_checkpoint_and_matches(tmp_path, image_folder):
    """A hard crash after step 6 loses steps 5-6; the resumed run redoes them identically."""
    train(tiny_config(tmp_path, image_folder, "unbroken"))

    def crash(event):
        if event["kind"] == "step" and event["step"] == 6:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny_config(tmp_path, image_folder, "crashed"), on_event=crash)
    assert read_metadata(tmp_path / "runs/crashed/model.safetensors")["steps"] == 4
    train(tiny_config(tmp_path, image_folder, "crashed"))
    assert_same_weights(tmp_path / "runs/unbroken/model.safetensors", tmp_path / "runs/crashed/model.safetensors")
    steps = [json.loads(line)["step"] for line in (tmp_path / "runs/crashed/log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # the lines of the lost steps were not duplicated


def test_a_run_resumed_on_another_machine_records_where_each_stretch_of_steps_ran(tmp_path, image_folder, monkeypatch):
    train(tiny_config(tmp_path, image_folder, steps=4))
    here = hinet.trainer.describe_device("cpu")
    assert read_metadata(tmp_path / "runs/run/model.safetensors")["training_segments"] == [
        {"from_step": 0, "device": here, "precision": "fp32"}
    ]
    monkeypatch.setattr(hinet.trainer, "describe_device", lambda device: "cpu: another machine")
    train(tiny_config(tmp_path, image_folder, steps=8))
    metadata = read_metadata(tmp_path / "runs/run/model.safetensors")
    assert [(s["from_step"], s["device"]) for s in metadata["training_segments"]] == [
        (0, here),
        (4, "cpu: another machine"),
    ]
    assert metadata["device"] == f"{here} + cpu: another machine" and metadata["precision"] == "fp32"
    train(tiny_config(tmp_path, image_folder, steps=8))  # finished: nothing new to record
    metadata = read_metadata(tmp_path / "runs/run/model.safetensors")
    assert len(metadata["training_segments"]) == 2
    sources = metadata["data_sources"]  # what trained, in the file itself (the run folder may not ship)
    assert sources["training"] == {"folder": ["astronaut.png", "coffee.png"], "dead_leaves": {"images": 8}}
    assert sources["validation"]["images"] == ["folder/chelsea.png@1"]
    assert set(sources["area_share"]) == {"dead_leaves", "folder"}


def test_blind_training_records_no_fixed_strength(tmp_path, image_folder):
    result = train(tiny_config(tmp_path, image_folder, steps=2, extra=["blind=true", "task=jpeg"]))
    metadata = read_metadata(result["model_path"])
    assert metadata["blind"] is True and metadata["strength"] is None and metadata["task"] == "jpeg"


def test_paired_folders_train_and_hold_out_the_last_pairs(tmp_path, image_folder):
    from hinet import data
    from hinet.image import load_image, save_image

    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    lq_dir.mkdir()
    gt_dir.mkdir()
    for i, path in enumerate(sorted(image_folder.iterdir())):
        clean = load_image(path).pixels
        save_image(gt_dir / path.name, clean)
        save_image(lq_dir / path.name, np.clip(data.degrade(clean, "denoise", i, sigma=25), 0, 1))
    result = train(
        tiny_config(
            tmp_path,
            image_folder,
            steps=4,
            extra=[f"data.paired_lq={lq_dir}", f"data.paired_gt={gt_dir}", "data.folder=null"],
        )
    )
    assert result["step"] == 4 and result["input_val_psnr"] < 25 and result["val_psnr"] is not None
    with pytest.raises(ConfigError, match="given together"):
        tiny_config(tmp_path, image_folder, extra=[f"data.paired_lq={lq_dir}"])
    with pytest.raises(ConfigError, match="leaves no training pair"):
        train(
            tiny_config(
                tmp_path,
                image_folder,
                "r2",
                extra=[f"data.paired_lq={lq_dir}", f"data.paired_gt={gt_dir}", "data.val_images=3"],
            )
        )


def test_resume_refuses_a_changed_config(tmp_path, image_folder):
    on_event, should_stop = stop_after(2)
    train(tiny_config(tmp_path, image_folder), on_event=on_event, should_stop=should_stop)
    with pytest.raises(ConfigError, match=r"different settings \(optimizer\)"):
        train(tiny_config(tmp_path, image_folder, extra=["optimizer.lr=0.01"]))


def test_a_run_can_start_from_another_runs_weights_and_records_them(tmp_path, image_folder, monkeypatch):
    train(tiny_config(tmp_path, image_folder, run_name="first", steps=4))
    start = tmp_path / "runs" / "first" / "model.safetensors"
    started_with = {}
    real_run = hinet.trainer.Trainer.run

    def run_and_record_the_starting_weights(self, *args, **kwargs):
        started_with.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return real_run(self, *args, **kwargs)

    monkeypatch.setattr(hinet.trainer.Trainer, "run", run_and_record_the_starting_weights)
    on_event, should_stop = stop_after(2)
    extra = [f"init_weights={start}"]
    train(tiny_config(tmp_path, image_folder, "second", 8, extra), on_event=on_event, should_stop=should_stop)
    first = weights(start)
    assert all(torch.equal(started_with[key], first[key]) for key in first)  # not a random init
    at_stop = weights(tmp_path / "runs" / "second" / "model.safetensors")
    train(tiny_config(tmp_path, image_folder, "second", 8, extra))  # resumed: its own state, not the start
    assert all(torch.equal(started_with[key], at_stop[key]) for key in at_stop)
    assert not all(torch.equal(started_with[key], first[key]) for key in first)
    metadata = read_metadata(tmp_path / "runs" / "second" / "model.safetensors")
    assert metadata["init_weights"] == str(start) and metadata["init_steps"] == 4 and metadata["steps"] == 8
    assert metadata["init_sha256"] == hashlib.sha256(start.read_bytes()).hexdigest()
    assert metadata["init_val_psnr"] == read_metadata(start)["val_psnr"]


def test_starting_weights_of_another_architecture_are_refused_by_name(tmp_path, image_folder):
    train(tiny_config(tmp_path, image_folder, run_name="first", steps=4))
    start = tmp_path / "runs" / "first" / "model.safetensors"
    extra = [f"init_weights={start}", "model.config={wf: 12}"]
    with pytest.raises(HINetError, match=r"model\.safetensors"):
        train(tiny_config(tmp_path, image_folder, "wider", 4, extra))
    with pytest.raises(HINetError, match="missing.safetensors"):
        train(tiny_config(tmp_path, image_folder, "nowhere", 4, [f"init_weights={tmp_path / 'missing.safetensors'}"]))


# --------------------------------------------------------------------------------------------------
# Failures


def test_nan_loss_stops_with_step_and_last_good_checkpoint(tmp_path, image_folder, monkeypatch):
    real_batch = hinet.training_data.TrainingData.batch

    def poisoned_batch(self, cfg, step, rank):
        lq, gt = real_batch(self, cfg, step, rank)
        if step >= 6:  # the 7th step sees NaN input
            lq = torch.full_like(lq, float("nan"))
        return lq, gt

    monkeypatch.setattr(hinet.training_data.TrainingData, "batch", poisoned_batch)
    with pytest.raises(HINetError, match=r"diverged at step 7.*model\.safetensors \(step 4\)"):
        train(tiny_config(tmp_path, image_folder))
    model, metadata = load_checkpoint(tmp_path / "runs/run/model.safetensors")  # loads: finite weights
    assert metadata["steps"] == 4
    assert json.loads((tmp_path / "runs/run/train_state.json").read_text())["step"] == 4


def test_huge_learning_rate_diverges_cleanly(tmp_path, image_folder):
    with pytest.raises(HINetError, match="diverged at step") as info:
        train(
            tiny_config(
                tmp_path,
                image_folder,
                steps=200,
                extra=["optimizer.lr=1e30", "loss.name=psnr", "checkpoint_every=1000", "val_every=0"],
            )
        )
    assert "\n" not in str(info.value)
    assert "no checkpoint was saved yet" in str(info.value)
    assert not (tmp_path / "runs/run/model.safetensors").exists()


def test_non_finite_weights_are_never_saved(tmp_path, image_folder):
    train(tiny_config(tmp_path, image_folder, steps=4))
    run = tmp_path / "runs/run"
    before = (run / "model.safetensors").read_bytes()
    model, _ = load_checkpoint(run / "model.safetensors")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    optimizer = torch.optim.Adam(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    with pytest.raises(HINetError, match="non-finite"):
        hinet.runs.save_run_state(run, model, optimizer, scheduler, {"step": 5}, {"steps": 5})
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize("failing", ["model", "state"])
def test_disk_full_while_saving_keeps_previous_checkpoint(tmp_path, image_folder, monkeypatch, failing):
    """The write of the step-8 checkpoint fails half-way; step 4's checkpoint stays whole and resumable."""
    import hinet.checkpoint

    def disk_full_save_file(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_full_atomic_write(path, payload):
        if Path(path).parent.name == ".staging":
            Path(path).write_bytes(payload[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return atomic_write_bytes(path, payload)

    def fill_disk_after_first_checkpoint(event):
        if event["kind"] == "step" and event["step"] == 5:
            if failing == "model":
                monkeypatch.setattr(hinet.checkpoint, "save_file", disk_full_save_file)
            else:
                monkeypatch.setattr(hinet.runs, "atomic_write_bytes", disk_full_atomic_write)

    expected = r"could not save the checkpoint at step 8.*No space left.*previous checkpoint is intact"
    with pytest.raises(HINetError, match=expected):
        train(tiny_config(tmp_path, image_folder, extra=["val_every=0"]), on_event=fill_disk_after_first_checkpoint)
    run = tmp_path / "runs/run"
    assert read_metadata(run / "model.safetensors")["steps"] == 4
    assert json.loads((run / "train_state.json").read_text())["step"] == 4
    load_file(str(run / "train_state.safetensors"))
    assert not (run / ".staging").exists()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.undo()  # disk freed: the run resumes from step 4 and finishes
    monkeypatch.setenv("HINET_CACHE", str(tmp_path / "cache"))
    assert train(tiny_config(tmp_path, image_folder, extra=["val_every=0"]))["step"] == 12


def test_atomic_write_leaves_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "state.json"
    atomic_write_bytes(target, b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_cli_reports_bad_input_in_one_line_and_exits_2(tmp_path, image_folder, capsys):
    overrides = tiny_overrides(tmp_path, image_folder)
    args = [a for o in overrides for a in ("--set", o)]
    assert main(args + ["--set", f"data.folder={tmp_path / 'nowhere'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "nowhere" in err and "does not exist" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(args + ["--set", f"data.folder={empty}"]) == 2
    assert "contains no images" in capsys.readouterr().err
    assert main(args + ["--set", "data.patch=30"]) == 2
    assert "multiple of 4" in capsys.readouterr().err
    assert main(args + ["--set", "strength.sigma=500"]) == 2
    assert "out of range" in capsys.readouterr().err
    assert main(args + ["--resume"]) == 2
    assert "no training state" in capsys.readouterr().err


def test_cli_unwritable_out_dir_is_one_message_before_any_work(tmp_path, image_folder, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    args = [a for o in tiny_overrides(tmp_path, image_folder) for a in ("--set", o)]
    prepared = []
    monkeypatch.setattr(hinet.trainer, "prepare_training_data", lambda *a: prepared.append(a))
    assert main(args + ["--set", f"out_dir={blocker / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: cannot write the run folder {blocker / 'runs' / 'run'}: Not a directory ({blocker}); "
        "set out_dir to a folder you can write to\n"
    )
    assert not prepared  # refused before the training data was prepared


def test_a_write_refused_in_the_run_folder_is_one_message(tmp_path, image_folder, capsys, monkeypatch):
    def refuse(path, payload):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(hinet.runs, "atomic_write_bytes", refuse)
    assert main([a for o in tiny_overrides(tmp_path, image_folder) for a in ("--set", o)]) == 2
    err = capsys.readouterr().err
    run = tmp_path / "runs" / "run"
    assert err == (
        f"error: cannot write the run folder {run}: Permission denied ({run / 'config.yaml'}); "
        "set out_dir to a folder you can write to\n"
    )


def test_cli_broken_yaml_is_one_line_naming_the_file(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("run_name: x\nsteps: [1, 2\ndata:\n  patch: 3\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is not valid YAML: line 3, column 5: ") and err.count("\n") == 1


def test_resuming_a_run_with_a_damaged_config_file_names_it(tmp_path, image_folder):
    run = tmp_path / "runs/run"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text('{"step": 4, "train_seconds": 1.0}')
    (run / "config.yaml").write_text("steps: [1\n")
    with pytest.raises(ConfigError, match=r"runs/run/config\.yaml is damaged"):
        train(tiny_config(tmp_path, image_folder))


# --------------------------------------------------------------------------------------------------
# Slow: multi-process training and real learning


@pytest.mark.slow
def test_two_process_ddp_run(tmp_path, image_folder):
    overrides = tiny_overrides(tmp_path, image_folder, "ddp", steps=6)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "hinet.train",
        "--no-progress",
    ] + [a for o in overrides for a in ("--set", o)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HINET_CACHE=str(tmp_path / "cache"))
    # Own process group, so a hung run is killed with its workers instead of leaking them.
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail("2-process training did not finish in 150 s")
    done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs/ddp"
    state = json.loads((run / "train_state.json").read_text())
    assert state["step"] == 6 and state["world_size"] == 2
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 7))  # rank 0 alone logs
    assert json.loads(done.stdout)["step"] == 6
    model, metadata = load_checkpoint(run / "model.safetensors")
    assert metadata["steps"] == 6


@pytest.mark.slow
def test_tiny_model_learns_to_denoise(tmp_path):
    """About a minute of CPU training must beat the noisy input (sigma 25) by at least 3 dB on held-out
    natural images; a run that does not learn fails."""
    cfg = load_config(
        None,
        [
            "run_name=learn",
            f"out_dir={tmp_path / 'runs'}",
            "model.variant=tiny_half_instance",
            "task=denoise",
            "strength.sigma=25",
            "data.dead_leaves=200",
            "data.dead_leaves_size=128",
            "data.scales=[1.0]",
            "data.patch=48",
            "data.batch=8",
            "data.val_images=2",
            "data.val_size=96",
            "steps=450",
            "optimizer.lr=2e-3",
            "scheduler.eta_min=1e-5",
            "loss.name=l1",
            "bf16=true",
            "val_every=150",
            "checkpoint_every=0",
            "progress=false",
        ],
    )
    result = train(cfg)
    gain = result["best_val_psnr"] - result["input_val_psnr"]
    print(
        f"input {result['input_val_psnr']:.2f} dB -> best {result['best_val_psnr']:.2f} dB "
        f"(+{gain:.2f}) in {result['train_seconds']:.0f} s"
    )
    assert gain >= 3.0


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{not json", "not readable JSON"),
        ('{"train_seconds": 1.0}', "missing step"),
        ("[1, 2]", "holds a list, not a JSON object"),
        ('{"step": "four", "train_seconds": 1.0}', "step or train_seconds is not a number"),
    ],
)
def test_damaged_train_state_json_raises_a_plain_error_naming_the_file(tmp_path, image_folder, content, problem):
    from hinet.errors import CheckpointError
    from hinet.runs import read_state

    run = tmp_path / "runs/run"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text(content)
    with pytest.raises(CheckpointError, match=f"train_state.json is damaged \\({problem}"):
        read_state(run)
    # resuming reads the same file first, before any data is prepared or weights are loaded
    with pytest.raises(CheckpointError, match=r"runs/run/train_state.json is damaged \("):
        train(tiny_config(tmp_path, image_folder))


def test_resume_with_state_json_lacking_the_optimizer_names_the_file(tmp_path, image_folder):
    from hinet.errors import CheckpointError

    run = tmp_path / "runs/run"
    run.mkdir(parents=True)
    (run / "train_state.json").write_text('{"step": 4, "train_seconds": 1.0}')
    with pytest.raises(CheckpointError, match="train_state.json is damaged \\(missing optimizer, scheduler\\)"):
        train(tiny_config(tmp_path, image_folder))


def test_validation_restores_train_mode_even_when_the_forward_fails():
    from hinet.metrics import Protocol
    from hinet.registry import create_model

    model = create_model("tiny_half_instance").train()

    def broken_forward(x):
        assert not model.training  # validation runs in eval mode
        raise RuntimeError("forward failed")

    model.forward = broken_forward
    pair = (np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward failed"):
        validation_scores(model, [pair], torch.device("cpu"), Protocol())
    assert model.training


@pytest.mark.parametrize("native", [True, False])
def test_bf16_falls_back_to_fp32_only_on_a_cpu_that_would_emulate_it(monkeypatch, caplog, native):
    monkeypatch.setattr(hinet.device, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert hinet.device.use_bf16(True, cpu) is native
    assert ("training in fp32" in caplog.text) is (not native)
    assert hinet.device.use_bf16(False, cpu) is False


def test_cli_stopped_on_request_saves_and_exits_130_so_chained_trainings_halt(tmp_path, image_folder, monkeypatch):
    import hinet.train as train_module

    polls = iter([False] * 3 + [True] * 100)  # as if SIGTERM came during the fourth step
    monkeypatch.setattr(train_module, "stop_on_signals", lambda: lambda: next(polls))
    overrides = tiny_overrides(tmp_path, image_folder)
    assert main([a for o in overrides for a in ("--set", o)]) == train_module.STOPPED_EXIT
    state = json.loads((tmp_path / "runs" / "run" / "train_state.json").read_text())
    assert state["step"] < 12  # stopped before its 12 steps, with its state saved to resume from


def test_cli_signalled_after_the_loop_still_exits_130(tmp_path, image_folder, monkeypatch):
    """A signal that lands on a finished run that only reports (or on the last step's save) halts the chain."""
    import hinet.train as train_module

    overrides = [a for o in tiny_overrides(tmp_path, image_folder) for a in ("--set", o)]
    assert main(overrides) == 0  # trained to the end
    received = [False]
    monkeypatch.setattr(train_module, "stop_on_signals", lambda: lambda: received[0])
    real_train = train_module.train

    def train_then_signal(cfg, should_stop=None):
        result = real_train(cfg, should_stop=should_stop)
        received[0] = True  # SIGTERM while the finished run reported
        return result

    monkeypatch.setattr(train_module, "train", train_then_signal)
    assert main(overrides) == train_module.STOPPED_EXIT
