"""The train tab's logic without a server or a real training: the slot, the worker thread, the streamed
updates, cancelling, and the texts (a stand-in trainer replaces `hinet.train.train`)."""

from __future__ import annotations

import threading
import time

import pytest

from app.train_logic import (
    TrainingError,
    TrainingSlot,
    cancel_training,
    make_config,
    run_training,
    training_status,
)
from hinet.errors import ConfigError

# task, norm, ratio, first level, last level, decoder norm, affine, wf, depth, steps, seed
GOOD = ["denoise", "half_instance", 0.5, 0, 2, False, True, 8, 3, 3, 0]


@pytest.fixture
def cfg(tmp_path):
    return make_config(*GOOD, runs_dir=tmp_path, name="run")


def result_of(cfg, step: int, stopped: bool = False) -> dict:
    return {
        "step": step,
        "steps": cfg.steps,
        "train_seconds": 1.0,
        "model_path": str(cfg.run_dir / "model.safetensors"),
        "best_val_psnr": 25.0,
        "best_step": step,
        "input_val_psnr": 20.0,
        "stopped": stopped,
    }


def three_steps(cfg, on_event, should_stop):
    for step in range(1, cfg.steps + 1):
        on_event({"kind": "step", "step": step, "loss": 1.0 / step, "lr": 1e-3, "wall": step})
    on_event({"kind": "val", "step": cfg.steps, "loss": 1.0 / cfg.steps, "val_psnr": 25.0, "val_ssim": 0.7})
    return result_of(cfg, cfg.steps)


def test_a_run_streams_its_records_and_frees_the_slot(cfg):
    slot = TrainingSlot()
    updates = list(run_training(cfg, owner="me", slot=slot, train=three_steps, refresh_seconds=0.01))
    assert updates[0].preparing and "Preparing the training data" in updates[0].note
    final = updates[-1]
    assert final.finished and "**Finished** at step 3/3" in final.note and "Best validation PSNR 25.00 dB" in final.note
    assert [r["step"] for r in final.records] == [1, 2, 3]
    assert final.records[-1]["val_psnr"] == 25.0  # the validation record replaces the step's own
    assert not slot.lock.locked() and slot.owner is None and slot.step == 3
    assert training_status(slot) == "No training run is in progress."


def test_a_second_run_is_refused_while_the_slot_is_taken(cfg):
    slot = TrainingSlot(step=7, total=300)
    slot.lock.acquire()
    with pytest.raises(TrainingError, match=r"A training run is in progress \(step 7/300\)"):
        next(run_training(cfg, slot=slot, train=three_steps))
    assert slot.lock.locked()  # still the other run's


@pytest.mark.parametrize(
    "error, message",
    [
        (ConfigError("out_dir is not writable"), "Training stopped: out_dir is not writable"),
        (RuntimeError("boom"), "Training stopped: Internal error: RuntimeError: boom"),
        (MemoryError(), "Training stopped: Out of memory: choose a smaller width or depth."),
    ],
)
def test_a_failed_run_says_why_and_frees_the_slot(cfg, error, message):
    def failing(cfg, on_event, should_stop):
        on_event({"kind": "step", "step": 1, "loss": 0.5})
        raise error

    slot = TrainingSlot()
    with pytest.raises(TrainingError) as info:
        list(run_training(cfg, slot=slot, train=failing, refresh_seconds=0.01))
    assert str(info.value) == message
    assert not slot.lock.locked()


def test_closing_the_stream_stops_the_run_and_keeps_its_checkpoint(cfg):
    started = threading.Event()

    def until_stopped(cfg, on_event, should_stop):
        step = 0
        while not should_stop():
            step += 1
            on_event({"kind": "step", "step": step, "loss": 0.1})
            time.sleep(0.01)
            started.set()
        return result_of(cfg, step, stopped=True)

    slot = TrainingSlot()
    updates = run_training(cfg, slot=slot, train=until_stopped, refresh_seconds=0.01)
    next(updates)
    assert started.wait(10)
    assert training_status(slot).startswith("Training `run`: step ")
    updates.close()  # what Gradio does on Cancel or a closed page
    assert slot.stop.is_set()
    slot.lock.acquire(timeout=10)  # the worker frees the slot once its (stand-in) checkpoint is saved


def test_cancel_stops_only_the_owners_run(cfg):
    slot = TrainingSlot()
    assert cancel_training("me", slot) == "No training run is in progress."

    def until_stopped(cfg, on_event, should_stop):
        step = 0
        while not should_stop():
            step += 1
            on_event({"kind": "step", "step": step, "loss": 0.1})
            time.sleep(0.01)
        return result_of(cfg, step, stopped=True)

    updates = run_training(cfg, owner="me", slot=slot, train=until_stopped, refresh_seconds=0.01)
    next(updates)
    assert cancel_training("someone else", slot).startswith("The run in progress was started by another user")
    assert not slot.stop.is_set()
    message = cancel_training("me", slot)
    assert message.startswith("Cancelled at step") and "The last checkpoint is kept in" in message
    assert not slot.lock.locked()
    final = list(updates)[-1]
    assert final.finished and final.note.startswith("**Stopped** at step")


def test_the_finished_note_says_where_the_weights_are_or_that_there_are_none(cfg):
    from app.train_logic import finished_note

    assert f"weights saved to `{cfg.run_dir / 'model.safetensors'}`" in finished_note(cfg, result_of(cfg, 3))
    nothing = dict(result_of(cfg, 0, stopped=True), model_path=None, best_val_psnr=None)
    note = finished_note(cfg, nothing)
    assert note.startswith("**Stopped** at step 0/3") and "no weights saved" in note and "None" not in note
