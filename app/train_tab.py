"""Train a variant on the CPU and watch its loss and validation PSNR live.

The run is an ordinary `hinet.train` run under `$HINET_RUNS_DIR` (default `./runs`), so when it ends it is
listed by the model store (restore tab) and by the ablation explorer's "your runs"; the shipped `results/`
are never written. One training runs at a time for the whole server (see `TrainingSlot`).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import gradio as gr
import pandas as pd

from app import ablation_views as views
from app import models
from app.context import AppContext
from app.errors import user_errors
from hinet.data import TASKS
from hinet.errors import ConfigError, HINetError
from hinet.model import NORM_NAMES
from hinet.results_table import LOG_COLUMNS

log = logging.getLogger(__name__)

MAX_STEPS = 5000  # a UI run stays in the minutes range on a 2-core CPU (~0.15-0.3 s per step)
DEFAULT_STEPS = 300
WIDTHS = (8, 16, 32)
DEPTHS = (2, 3, 4, 5)
# Data for app runs: smaller than the sweep's so that preparing it takes seconds, not a minute.
UI_DATA = dict(skimage=True, pywt=True, dead_leaves=200, dead_leaves_size=128, patch=64, batch=8, val_images=4,
               val_size=128)
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
        return (f"A training run is in progress (step {self.step}/{self.total}); try again when it finishes. "
                "Only one training runs at a time on this server.")


SLOT = TrainingSlot()


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


def make_config(task: str, norm: str, ratio: float, left: int, right: int, decoder_norm: bool, affine: bool,
                wf: int, depth: int, steps: int, seed: int, runs_dir: Path | None = None, name: str | None = None):
    """The `TrainConfig` of an app run; raises `ConfigError` with a plain message for impossible choices."""
    from hinet.config import TrainConfig

    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}; got {task!r}")
    steps, seed, wf, depth, left, right = (_whole_number(name, value) for name, value in (
        ("steps", steps), ("seed", seed), ("wf", wf), ("depth", depth), ("first normalized level", left),
        ("last normalized level", right)))
    ratio = _number("normalized fraction", ratio)
    if not 1 <= steps <= MAX_STEPS:
        raise ConfigError(f"steps must be between 1 and {MAX_STEPS} in the app (got {steps}); "
                          "longer runs belong on the command line: python -m hinet.train --set steps=N")
    if not 0 <= left <= right <= depth - 1:
        raise ConfigError(f"the normalized levels must satisfy 0 <= first ({left}) <= last ({right}) <= depth - 1 "
                          f"({depth - 1})")
    runs_dir = Path(runs_dir) if runs_dir is not None else models.runs_dir()
    name = name or run_name(norm, ratio, wf, depth, seed, task)
    while (runs_dir / name).exists():  # a new run never resumes or overwrites an older one
        name += "-new"
    model = dict(wf=wf, depth=depth, norm=norm, norm_ratio=ratio, hin_position_left=left,
                 hin_position_right=right, norm_in_decoder=bool(decoder_norm), norm_affine=bool(affine))
    patch = max(UI_DATA["patch"], 2 ** (depth - 1))
    patch -= patch % 2 ** (depth - 1)
    data = dict(UI_DATA, patch=patch, val_size=max(UI_DATA["val_size"], 2 ** (depth - 1)))
    return TrainConfig.from_dict({
        "run_name": name, "out_dir": str(runs_dir), "seed": seed, "device": "cpu",
        "threads": 1,  # the server keeps serving inference; train() restores the previous count after
        "task": task, "model": {"variant": None, "config": model}, "data": data, "steps": steps,
        "optimizer": {"lr": UI_LEARNING_RATE},
        "val_every": max(1, steps // VALIDATIONS_PER_RUN), "log_every": max(1, steps // 200),
        "checkpoint_every": 500, "progress": False,
    })


# ----------------------------------------------------------------------------------------------------
# Running


def _worker(cfg, events: queue.Queue) -> None:
    """Runs in its own thread; always releases the slot, after the last checkpoint is written."""
    from hinet.train import train

    def on_event(event: dict) -> None:
        SLOT.step = int(event.get("step") or SLOT.step)
        events.put(("event", event))

    try:
        result = train(cfg, on_event=on_event, should_stop=SLOT.stop.is_set)
        events.put(("result", result))
    except HINetError as error:
        events.put(("error", str(error)))
    except MemoryError:
        events.put(("error", "Out of memory: choose a smaller width or depth."))
    except Exception as error:  # noqa: BLE001 - a crashed run must free the slot and say why
        log.exception("training run %s failed", cfg.run_name)
        events.put(("error", f"Internal error: {type(error).__name__}: {error}"))
    finally:
        SLOT.owner = None
        SLOT.lock.release()
        events.put(("finished", None))


def _status(cfg, records: list[dict], started: float, note: str = "") -> str:
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


def _figure(cfg, records: list[dict]):
    frame = pd.DataFrame.from_records(records, columns=list(LOG_COLUMNS)) if records else pd.DataFrame(
        columns=list(LOG_COLUMNS))
    frame = frame.apply(pd.to_numeric, errors="coerce")
    return views.training_figure(frame, title=f"{cfg.run_name}: {cfg.task}, {cfg.steps} steps")


def _finished_note(cfg, result: dict) -> str:
    verb = "Stopped" if result.get("stopped") else "Finished"
    lines = [f"**{verb}** at step {result['step']}/{result['steps']} after {result['train_seconds']:.0f} s of "
             f"training; weights saved to `{result['model_path']}`."]
    if result.get("best_val_psnr") is not None:
        gain = ""
        if result.get("input_val_psnr") is not None:
            gain = f" (degraded input: {result['input_val_psnr']:.2f} dB)"
        lines.append(f"Best validation PSNR {result['best_val_psnr']:.2f} dB at step {result['best_step']}{gain}.")
    lines.append(f"The run is listed in **Ablations → Your runs** and in the **Restore** tab's variants for "
                 f"task *{cfg.task}* as `my run {cfg.run_name}`.")
    return "\n\n".join(lines)


@user_errors
def start_training(task, norm, ratio, left, right, decoder_norm, affine, wf, depth, steps, seed,
                   request: gr.Request = None, progress=gr.Progress()):
    """Stream (figure, status) while a run trains; refuses with gr.Error when the slot is taken."""
    cfg = make_config(task, norm, ratio, left, right, decoder_norm, affine, wf, depth, steps, seed)
    if not SLOT.lock.acquire(blocking=False):
        raise gr.Error(SLOT.busy_message())
    SLOT.stop.clear()
    SLOT.owner = getattr(request, "session_hash", None)
    SLOT.run_dir, SLOT.step, SLOT.total = cfg.run_dir, 0, cfg.steps
    events: queue.Queue = queue.Queue()
    started = time.monotonic()
    try:
        threading.Thread(target=_worker, args=(cfg, events), name=f"train-{cfg.run_name}", daemon=True).start()
    except BaseException:
        SLOT.owner = None
        SLOT.lock.release()
        raise
    records: list[dict] = []
    result, error = None, None
    progress((0, cfg.steps), desc="preparing data", unit="steps")
    yield _figure(cfg, records), _status(cfg, records, started, "Preparing the training data…")
    last_sent = time.monotonic()
    finished = False
    try:
        while not finished:
            try:
                kind, payload = events.get(timeout=REFRESH_SECONDS)
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
            if finished or fresh_validation or time.monotonic() - last_sent >= REFRESH_SECONDS:
                step = records[-1]["step"] if records else 0
                progress((step, cfg.steps), desc="training", unit="steps")
                if finished:
                    break
                note = "Stopping: saving the checkpoint…" if SLOT.stop.is_set() else ""
                yield _figure(cfg, records), _status(cfg, records, started, note)
                last_sent = time.monotonic()
    finally:
        if not finished:
            # The generator was closed early (Cancel or a closed page): stop the run cleanly.
            SLOT.stop.set()
    if error is not None:
        raise gr.Error(f"Training stopped: {error}")
    yield _figure(cfg, records), _status(cfg, records, started, _finished_note(cfg, result))


def cancel_training(request: gr.Request = None) -> str:
    """Ask the caller's run to stop at the next step and wait until its checkpoint is saved."""
    session = getattr(request, "session_hash", None)
    if not SLOT.lock.locked():
        return "No training run is in progress."
    if SLOT.owner is not None and session is not None and SLOT.owner != session:
        return "The run in progress was started by another user; only they can cancel it."
    run_dir, total = SLOT.run_dir, SLOT.total
    SLOT.stop.set()
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while SLOT.lock.locked() and time.monotonic() < deadline:
        time.sleep(0.1)
    if SLOT.lock.locked():
        return "Stopping: the current step is taking long; the checkpoint will be saved when it ends."
    return (f"Cancelled at step {SLOT.step}/{total}. The last checkpoint is kept in `{run_dir}`; it is listed "
            "in Ablations → Your runs and in the Restore tab.")


def training_status() -> str:
    if SLOT.lock.locked():
        return f"Training `{SLOT.run_dir.name if SLOT.run_dir else '?'}`: step {SLOT.step}/{SLOT.total}."
    return "No training run is in progress."


# ----------------------------------------------------------------------------------------------------
# Layout


def _on_norm(norm: str):
    return gr.update(value=default_ratio(norm), interactive=norm != "none")


def _on_depth(depth: int, left: int, right: int):
    top = int(depth) - 1
    return gr.update(maximum=top, value=min(int(left), top)), gr.update(maximum=top, value=min(int(right), top))


def build_tab(ctx: AppContext) -> None:
    gr.Markdown(
        "### Train a variant on the CPU\nPick the knobs, start, and watch the loss and the validation PSNR. "
        f"Runs are capped at **{MAX_STEPS} steps** here (a few hundred steps take minutes; longer runs: "
        "`python -m hinet.train`). Only one training runs at a time on this server, with one CPU thread so "
        f"that restoring stays responsive. Runs are saved under `{models.runs_dir()}` (`$HINET_RUNS_DIR`), "
        "never over the shipped results; **Cancel** stops at the next step and keeps the checkpoint."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            task = gr.Dropdown(list(TASKS), value=TASKS[0], label="Task (default degradation level)")
            norm = gr.Dropdown(list(NORM_NAMES), value="half_instance", label="Normalization")
            ratio = gr.Slider(0.125, 1.0, value=0.5, step=0.125,
                              label="Normalized fraction of channels (0.5 + half_instance = HIN)")
            with gr.Row():
                left = gr.Slider(0, 3, value=0, step=1, label="First normalized encoder level")
                right = gr.Slider(0, 3, value=3, step=1, label="Last normalized encoder level")
            with gr.Row():
                decoder_norm = gr.Checkbox(value=False, label="Also normalize the decoder")
                affine = gr.Checkbox(value=True, label="Learnable γ/β (affine)")
            with gr.Row():
                wf = gr.Dropdown(list(WIDTHS), value=16, label="Width wf (channels at level 0)")
                depth = gr.Dropdown(list(DEPTHS), value=4, label="Depth (U-Net levels)")
            with gr.Row():
                steps = gr.Number(value=DEFAULT_STEPS, precision=0, minimum=1, maximum=MAX_STEPS,
                                  label=f"Steps (1-{MAX_STEPS})")
                seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            figure = gr.Plot(label="Live training curves")
            status = gr.Markdown(training_status())

    norm.change(_on_norm, norm, ratio, api_visibility="private")
    depth.change(_on_depth, [depth, left, right], [left, right], api_visibility="private")
    # No concurrency limit: a second request must reach the slot check and be refused at once instead of
    # waiting silently behind a run of many minutes.
    train_event = start.click(
        start_training, [task, norm, ratio, left, right, decoder_norm, affine, wf, depth, steps, seed],
        [figure, status], api_name="train", concurrency_limit=None,
    )
    cancel.click(cancel_training, None, status, cancels=[train_event], api_name="cancel_training",
                 concurrency_limit=None)
    status_probe = gr.Button(visible=False)
    status_probe.click(training_status, None, status, api_name="training_status", concurrency_limit=None)


__all__ = ["build_tab", "start_training", "cancel_training", "training_status", "make_config", "SLOT", "MAX_STEPS"]
