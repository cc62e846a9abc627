"""Train a variant on the CPU and watch its loss and validation PSNR live.

Wiring only: the config, the server's single training slot and the worker thread are `app.train_logic`.
The run is an ordinary `hinet.train` run under the model store's runs folder (`$HINET_RUNS_DIR`, default
`./runs`), listed by the restore tab and the ablation explorer when it ends.
"""

from __future__ import annotations

import time
from contextlib import closing
from functools import partial
from pathlib import Path

import gradio as gr

from app import train_logic as logic
from app.context import AppContext
from app.errors import user_errors
from app.exports import DOWNLOAD_HEIGHT, export_csv
from app.models import ModelStore
from app.train_logic import DEFAULT_STEPS, DEPTHS, MAX_STEPS, WIDTHS, default_ratio, make_config
from hinet.model import NORM_NAMES
from hinet.results_table import read_run_log
from hinet.runs import LOG_FILE
from hinet.tasks import TASK_NAMES

PRODUCED_BY = (
    "*Produced by* `app.train_logic.run_training`, which runs `hinet.train.train` in a worker thread; the curves "
    "are the run's `log.jsonl`. The same training from the shell: `python -m hinet.train --config "
    "<run folder>/config.yaml --set run_name=<a new name>` (the finished note names the folder)."
)

# ----------------------------------------------------------------------------------------------------
# Events


@user_errors
def start_training(
    store: ModelStore,
    task,
    norm,
    ratio,
    left,
    right,
    decoder_norm,
    affine,
    wf,
    depth,
    steps,
    seed,
    request: gr.Request = None,
    progress=gr.Progress(),
):
    """Stream (figure, status, run folder) while a run trains; refuses with a plain error when the slot is
    taken. The run folder goes to a gr.State (not part of the API's outputs), for the log's CSV."""
    cfg = make_config(
        task, norm, ratio, left, right, decoder_norm, affine, wf, depth, steps, seed, runs_dir=store.runs_dir
    )
    started = time.monotonic()
    # closing(): a Cancel or a closed page closes this generator, and with it the run's (which stops the run).
    with closing(logic.run_training(cfg, owner=getattr(request, "session_hash", None))) as updates:
        for update in updates:
            if update.preparing:
                progress((0, cfg.steps), desc="preparing data", unit="steps")
            else:
                step = update.records[-1]["step"] if update.records else 0
                progress((step, cfg.steps), desc="training", unit="steps")
            yield (
                logic.training_figure(cfg, update.records),
                logic.status_text(cfg, update.records, started, update.note),
                str(cfg.run_dir),
            )


@user_errors
def export_log(run_dir: str | None):
    """The curves' data, the run's whole log.jsonl, as CSV (None before a run has logged anything)."""
    if not run_dir or not (Path(run_dir) / LOG_FILE).is_file():
        return None
    return export_csv(
        read_run_log(Path(run_dir) / LOG_FILE).assign(run=Path(run_dir).name), f"{Path(run_dir).name}_log"
    )


def cancel_training(request: gr.Request = None) -> str:
    """Ask the caller's run to stop at the next step and wait until its checkpoint is saved."""
    return logic.cancel_training(getattr(request, "session_hash", None))


def training_status() -> str:
    return logic.training_status()


# ----------------------------------------------------------------------------------------------------
# Layout


def _on_norm(norm: str):
    return gr.update(value=default_ratio(norm), interactive=norm != "none")


def _on_depth(depth: int, left: int, right: int):
    top = int(depth) - 1
    return gr.update(maximum=top, value=min(int(left), top)), gr.update(maximum=top, value=min(int(right), top))


def build_tab(ctx: AppContext) -> None:
    store = ctx.store
    gr.Markdown(
        "### Train a variant on the CPU\nPick the knobs, start, and watch the loss and the validation PSNR. "
        f"Runs are capped at **{MAX_STEPS} steps** here (a few hundred steps take minutes; longer runs: "
        "`python -m hinet.train`). Only one training runs at a time on this server, with one CPU thread so "
        f"that restoring stays responsive. Runs are saved under `{store.runs_dir}` (`$HINET_RUNS_DIR`), "
        "never over the shipped results; **Cancel** stops at the next step and keeps the checkpoint."
    )
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            task = gr.Dropdown(list(TASK_NAMES), value=TASK_NAMES[0], label="Task (default degradation level)")
            norm = gr.Dropdown(list(NORM_NAMES), value="half_instance", label="Normalization")
            ratio = gr.Slider(
                0.125, 1.0, value=0.5, step=0.125, label="Normalized fraction of channels (0.5 + half_instance = HIN)"
            )
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
                steps = gr.Number(
                    value=DEFAULT_STEPS, precision=0, minimum=1, maximum=MAX_STEPS, label=f"Steps (1-{MAX_STEPS})"
                )
                seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Row():
                start = gr.Button("Start training", variant="primary")
                cancel = gr.Button("Cancel", variant="stop")
        with gr.Column(scale=2):
            figure = gr.Plot(label="Live training curves")
            status = gr.Markdown(training_status())
            log_csv = gr.File(label="The run's log: every logged step (CSV)", interactive=False, height=DOWNLOAD_HEIGHT)
            gr.Markdown(PRODUCED_BY)
    run_dir = gr.State(None)

    norm.change(_on_norm, norm, ratio, api_visibility="private")
    depth.change(_on_depth, [depth, left, right], [left, right], api_visibility="private")
    # No concurrency limit: a second request must reach the slot check and be refused at once instead of
    # waiting silently behind a run of many minutes.
    train_event = start.click(
        partial(start_training, store),
        [task, norm, ratio, left, right, decoder_norm, affine, wf, depth, steps, seed],
        [figure, status, run_dir],
        api_name="train",
        concurrency_limit=None,
    )
    train_event.then(export_log, run_dir, log_csv, api_visibility="private")
    cancel.click(
        cancel_training, None, status, cancels=[train_event], api_name="cancel_training", concurrency_limit=None
    ).then(export_log, run_dir, log_csv, api_visibility="private")
    status_probe = gr.Button(visible=False)
    status_probe.click(training_status, None, status, api_name="training_status", concurrency_limit=None)


__all__ = ["build_tab", "start_training", "cancel_training", "training_status"]
