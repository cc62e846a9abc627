"""What the "Train a variant" tab does, without any Gradio: the config of an app run, the server's single
training slot, the worker thread that runs `hinet.train`, and the text and figure of its progress.

The run is an ordinary `hinet.train` run under the model store's runs folder (`$HINET_RUNS_DIR`, default
`./runs`), so when it ends it is listed by the model store (restore tab) and by the ablation explorer's
"your runs"; the shipped `results/` are never written. One training runs at a time for the whole server
(see `TrainingSlot`). The tab (`app/train_tab.py`) turns widgets into `make_config` arguments, streams
`run_training`'s updates, and maps `TrainingError` to a message like every other project error.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from app import ablation_views as views, models
from hinet.errors import ConfigError, HINetError
from hinet.results_table import LOG_COLUMNS
from hinet.tasks import get_task

log = logging.getLogger(__name__)

MAX_STEPS = 5000  # a UI run stays in the minutes range on a 2-core CPU (~0.15-0.3 s per step)
DEFAULT_STEPS = 300
WIDTHS = (8, 16, 32)
DEPTHS = (2, 3, 4, 5)
# Data for app runs: smaller than the sweep's so that preparing it takes seconds, not a minute.
UI_DATA = dict(
    skimage=True, pywt=True, dead_leaves=200, dead_leaves_size=128, patch=64, batch=8, val_images=4, val_size=128
)
UI_LEARNING_RATE = 1e-3
VALIDATIONS_PER_RUN = 10
REFRESH_SECONDS = 1.0  # at most one streamed update per second: plotly figures are not free to send
CANCEL_WAIT_SECONDS = 120.0  # a cancel waits this long for the checkpoint of the current step


@dataclass
class TrainingSlot:
    """The server's single training slot.

    This is the app's one module-level mutable object, on purpose: the CPU can train one model at a time
    without starving inference, and that limit is about the machine, not about a user, so it cannot live
    in per-session `gr.State`. The lock is taken by the request that starts a run and released by the
    worker thread when the run has saved its checkpoint.
    """

    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    owner: str | None = None  # session hash of the user whose run holds the slot
    run_dir: Path | None = None
    step: int = 0
    total: int = 0

    def busy_message(self) -> str:
        return (
            f"A training run is in progress (step {self.step}/{self.total}); try again when it finishes. "
            "Only one training runs at a time on this server."
        )


SLOT = TrainingSlot()


class TrainingError(HINetError):
    """The slot is taken by another run, or the run stopped with an error; the message says which."""


@dataclass
class TrainingUpdate:
    records: list[dict]  # the run's step and validation records so far, LOG_COLUMNS each
    note: str = ""  # shown under the status line
    preparing: bool = False  # the first update: the data is being prepared, no step has run yet
    finished: bool = False  # the last update: the note says how the run ended


# ----------------------------------------------------------------------------------------------------
# Config


def default_ratio(norm: str) -> float:
    return 0.5 if norm == "half_instance" else 1.0


def run_name(norm: str, ratio: float, wf: int, depth: int, seed: int, task: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{task}_{norm}_r{ratio:g}_wf{wf}d{depth}_s{seed}_{stamp}")


def _number(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number; got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    return number


def _whole_number(name: str, value) -> int:
    number = _number(name, value)
    if number != int(number):
        raise ConfigError(f"{name} must be a whole number; got {value!r}")
    return int(number)


def make_config(
    task: str,
    norm: str,
    ratio: float,
    left: int,
    right: int,
    decoder_norm: bool,
    affine: bool,
    wf: int,
    depth: int,
    steps: int,
    seed: int,
    runs_dir: Path | None = None,
    name: str | None = None,
):
    """The `TrainConfig` of an app run; raises `ConfigError` with a plain message for impossible choices."""
    from hinet.config import TrainConfig

    get_task(task)  # ConfigError naming the known tasks
    steps, seed, wf, depth, left, right = (
        _whole_number(name, value)
        for name, value in (
            ("steps", steps),
            ("seed", seed),
            ("wf", wf),
            ("depth", depth),
            ("first normalized level", left),
            ("last normalized level", right),
        )
    )
    ratio = _number("normalized fraction", ratio)
    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError(
            f"steps must be between 1 and {MAX_STEPS} in the app (got {steps}); "
            "longer runs belong on the command line: python -m hinet.train --set steps=N"
        )
    if not 0 <= left <= right <= depth - 1:
        raise ConfigError(
            f"the normalized levels must satisfy 0 <= first ({left}) <= last ({right}) <= depth - 1 ({depth - 1})"
        )
    runs_dir = Path(runs_dir) if runs_dir is not None else models.runs_dir()
    name = name or run_name(norm, ratio, wf, depth, seed, task)
    while (runs_dir / name).exists():  # a new run never resumes or overwrites an older one
        name += "-new"
    model = dict(
        wf=wf,
        depth=depth,
        norm=norm,
        norm_ratio=ratio,
        hin_position_left=left,
        hin_position_right=right,
        norm_in_decoder=bool(decoder_norm),
        norm_affine=bool(affine),
    )
    patch = max(UI_DATA["patch"], 2 ** (depth - 1))
    patch -= patch % 2 ** (depth - 1)
    data = dict(UI_DATA, patch=patch, val_size=max(UI_DATA["val_size"], 2 ** (depth - 1)))
    return TrainConfig.from_dict(
        {
            "run_name": name,
            "out_dir": str(runs_dir),
            "seed": seed,
            "device": "cpu",
            "threads": 1,  # the server keeps serving inference; train() restores the previous count after
            "task": task,
            "model": {"variant": None, "config": model},
            "data": data,
            "steps": steps,
            "optimizer": {"lr": UI_LEARNING_RATE},
            "val_every": max(1, steps // VALIDATIONS_PER_RUN),
            "log_every": max(1, steps // 200),
            "checkpoint_every": 500,
            "progress": False,
        }
    )


# ----------------------------------------------------------------------------------------------------
# Running


def _worker(cfg, events: queue.Queue, slot: TrainingSlot, train: Callable | None) -> None:
    """Runs in its own thread; always releases the slot, after the last checkpoint is written."""
    if train is None:
        from hinet.train import train

    def on_event(event: dict) -> None:
        slot.step = int(event.get("step") or slot.step)
        events.put(("event", event))

    try:
        result = train(cfg, on_event=on_event, should_stop=slot.stop.is_set)
        events.put(("result", result))
    except HINetError as error:
        events.put(("error", str(error)))
    except MemoryError:
        events.put(("error", "Out of memory: choose a smaller width or depth."))
    except Exception as error:  # noqa: BLE001 - a crashed run must free the slot and say why
        log.exception("training run %s failed", cfg.run_name)
        events.put(("error", f"Internal error: {type(error).__name__}: {error}"))
    finally:
        slot.owner = None
        slot.lock.release()
        events.put(("finished", None))


def run_training(
    cfg,
    owner: str | None = None,
    slot: TrainingSlot = SLOT,
    train: Callable | None = None,
    refresh_seconds: float = REFRESH_SECONDS,
) -> Iterator[TrainingUpdate]:
    """Take the slot, train `cfg` in a worker thread, and yield an update at most every `refresh_seconds`
    (and at every validation) until the run ends.

    Raises `TrainingError` when the slot is taken or the run fails. Closing the generator early (Cancel,
    a closed page) asks the run to stop; the worker still saves its checkpoint and then frees the slot.
    `train` defaults to `hinet.train.train`.
    """
    if not slot.lock.acquire(blocking=False):
        raise TrainingError(slot.busy_message())
    slot.stop.clear()
    slot.owner = owner
    slot.run_dir, slot.step, slot.total = cfg.run_dir, 0, cfg.steps
    events: queue.Queue = queue.Queue()
    try:
        threading.Thread(
            target=_worker, args=(cfg, events, slot, train), name=f"train-{cfg.run_name}", daemon=True
        ).start()
    except BaseException:
        slot.owner = None
        slot.lock.release()
        raise
    records: list[dict] = []
    result, error = None, None
    finished = False
    try:
        yield TrainingUpdate(list(records), "Preparing the training data…", preparing=True)
        last_sent = time.monotonic()
        while not finished:
            try:
                kind, payload = events.get(timeout=refresh_seconds)
            except queue.Empty:
                kind, payload = None, None
            fresh_validation = False
            if kind == "event" and payload.get("kind") in ("step", "val"):
                record = {key: payload.get(key) for key in LOG_COLUMNS}
                if payload["kind"] == "val":
                    fresh_validation = True
                    if records and records[-1]["step"] == record["step"]:
                        records[-1] = record
                        record = None
                if record is not None:
                    records.append(record)
            elif kind == "result":
                result = payload
            elif kind == "error":
                error = payload
            elif kind == "finished":
                finished = True
            if not finished and (fresh_validation or time.monotonic() - last_sent >= refresh_seconds):
                note = "Stopping: saving the checkpoint…" if slot.stop.is_set() else ""
                yield TrainingUpdate(list(records), note)
                last_sent = time.monotonic()
    finally:
        if not finished:
            # The generator was closed early (Cancel or a closed page): stop the run cleanly.
            slot.stop.set()
    if error is not None:
        raise TrainingError(f"Training stopped: {error}")
    yield TrainingUpdate(list(records), finished_note(cfg, result), finished=True)


def cancel_training(session: str | None, slot: TrainingSlot = SLOT) -> str:
    """Ask the session's run to stop at the next step and wait until its checkpoint is saved."""
    if not slot.lock.locked():
        return "No training run is in progress."
    if slot.owner is not None and session is not None and slot.owner != session:
        return "The run in progress was started by another user; only they can cancel it."
    run_dir, total = slot.run_dir, slot.total
    slot.stop.set()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while slot.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.1)
    if slot.lock.locked():
        return "Stopping: the current step is taking long; the checkpoint will be saved when it ends."
    return (
        f"Cancelled at step {slot.step}/{total}. The last checkpoint is kept in `{run_dir}`; it is listed "
        "in Ablations → Your runs and in the Restore tab."
    )


def training_status(slot: TrainingSlot = SLOT) -> str:
    if slot.lock.locked():
        return f"Training `{slot.run_dir.name if slot.run_dir else '?'}`: step {slot.step}/{slot.total}."
    return "No training run is in progress."


# ----------------------------------------------------------------------------------------------------
# Progress: the status line, the curves, the closing note


def status_text(cfg, records: list[dict], started: float, note: str = "") -> str:
    """The status line under the curves: run, step, last loss, last validation PSNR, elapsed time."""
    last = records[-1] if records else {}
    vals = [r for r in records if r.get("val_psnr") is not None]
    parts = [f"**{cfg.run_name}** · step {last.get('step', 0)}/{cfg.steps}"]
    if last.get("loss") is not None:
        parts.append(f"loss {last['loss']:.4g}")
    if vals:
        parts.append(f"val PSNR {vals[-1]['val_psnr']:.2f} dB (step {vals[-1]['step']})")
    parts.append(f"{time.monotonic() - started:.0f} s")
    text = " · ".join(parts)
    return f"{text}\n\n{note}" if note else text


def training_figure(cfg, records: list[dict]):
    frame = (
        pd.DataFrame.from_records(records, columns=list(LOG_COLUMNS))
        if records
        else pd.DataFrame(columns=list(LOG_COLUMNS))
    )
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return views.training_figure(frame, title=f"{cfg.run_name}: {cfg.task}, {cfg.steps} steps")


def finished_note(cfg, result: dict) -> str:
    verb = "Stopped" if result.get("stopped") else "Finished"
    saved = (
        f"weights saved to `{result['model_path']}`"
        if result.get("model_path")
        else "no weights saved (stopped before its first step, or its weights are not on this machine)"
    )
    lines = [
        f"**{verb}** at step {result['step']}/{result['steps']} after {result['train_seconds']:.0f} s of training; {saved}."
    ]
    if result.get("best_val_psnr") is not None:
        gain = ""
        if result.get("input_val_psnr") is not None:
            gain = f" (degraded input: {result['input_val_psnr']:.2f} dB)"
        lines.append(f"Best validation PSNR {result['best_val_psnr']:.2f} dB at step {result['best_step']}{gain}.")
    lines.append(
        f"The run is listed in **Ablations → Your runs** and in the **Restore** tab's variants for "
        f"task *{cfg.task}* as `my run {cfg.run_name}`."
    )
    return "\n\n".join(lines)


__all__ = [
    "MAX_STEPS",
    "DEFAULT_STEPS",
    "WIDTHS",
    "DEPTHS",
    "UI_DATA",
    "TrainingSlot",
    "SLOT",
    "default_ratio",
    "make_config",
    "TrainingError",
    "TrainingUpdate",
    "run_training",
    "cancel_training",
    "training_status",
    "status_text",
    "training_figure",
    "finished_note",
]
