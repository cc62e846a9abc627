"""Ablation explorer: tables and plots of `results/ablation.csv`, plus the runs trained in the app.

Every number comes from `hinet.results_table` (the code that also writes results/README.md). The CSV is
re-read when its modification time changes, so a finished sweep shows up after "Reload".
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache, partial
from pathlib import Path

import gradio as gr
import pandas as pd

from app import ablation_views as views
from app.choices import task_model_choices
from app.context import AppContext
from app.errors import user_errors
from app.exports import DOWNLOAD_HEIGHT, EXPORT_DIR, EXPORT_KEEP, export_csv, table_csv_event, write_exports
from app.models import ModelStore
from hinet import results_table as rt
from hinet.errors import HINetError
from hinet.runs import (
    ABLATION_FILE,
    CONFIG_FILE,
    EVAL_FILE,
    LOG_FILE,
    MODEL_FILE,
    SHIPPED_WEIGHTS_FILE,
    results_runs_dir,
)

log = logging.getLogger(__name__)

SWEEP_COMMANDS = """    scripts/run_ladder.sh                     # the budget ladder: 3k, 300, 1k, knobs, patch, placement, 10k
    python -m hinet.sweep configs/ablation_norm.yaml     # or one grid: configs/ablation_*.yaml
    python scripts/make_results_readme.py     # the same tables in results/README.md"""
COSTS = {"MACs": "macs", "latency": "latency_ms"}
SPREADS = ("min-max", "std")
# What every figure and table of this tab is computed from, and the commands that rebuild it.
PRODUCED_BY = (
    "*Produced by* `hinet.results_table` (`summarize`, `per_image_delta`, `validation_curves`, `config_differences`) "
    "over `results/ablation.csv` and the runs' `log.jsonl`, which `python -m hinet.sweep configs/ablation_*.yaml` "
    "writes; `python scripts/make_results_readme.py` prints the same tables into results/README.md. "
    "From Python: the `/ablation_table` and `/ablation_ladder` endpoints."
)
USER_RUNS_PRODUCED_BY = (
    "*Produced by* `app.ablation_tab.user_runs` from each run's `log.jsonl`, `config.yaml` and `eval.csv` "
    "(written by the *Train a variant* tab or `python -m hinet.train --config <run>/config.yaml`); "
    "from Python: the `/user_runs` endpoint."
)
PENDING_OPEN_SECONDS = 10.0  # how long an "open in restore" waits for the restore tab to list the new task


def ablation_csv(store: ModelStore) -> Path:
    return store.results_dir / ABLATION_FILE


def ablation_runs_dir(store: ModelStore) -> Path:
    return results_runs_dir(store.results_dir)


# ----------------------------------------------------------------------------------------------------
# Loading


@lru_cache(maxsize=4)
def _read_cached(path: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return rt.read_ablation_csv(path)


def load_table(csv_path: Path) -> tuple[pd.DataFrame | None, str]:
    """(table, "") or (None, a Markdown message saying what is wrong and what to do)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        return None, (
            f"**No ablation results yet:** `{csv_path}` does not exist. Run the sweep (a few hours on a CPU), "
            f"then press *Reload*:\n\n{SWEEP_COMMANDS}\n\nMeanwhile the *Train a variant* tab trains one "
            "variant; your runs are listed below."
        )
    try:
        stat = csv_path.stat()
        return _read_cached(str(csv_path), stat.st_mtime_ns, stat.st_size), ""
    except HINetError as error:
        return None, f"**The ablation table cannot be used:** {error}\n\nRegenerate it with:\n\n{SWEEP_COMMANDS}"


# ----------------------------------------------------------------------------------------------------
# Rendering


def _export(frame: pd.DataFrame, markdown: str, stem: str) -> tuple[str, str]:
    """Write the table as CSV and Markdown (`app.exports`: content-hashed names, so repeated exports reuse files)."""
    csv_path, md_path = write_exports(
        {"csv": rt.frame_to_csv(frame), "md": markdown + "\n"}, stem, folder=EXPORT_DIR, keep=EXPORT_KEEP
    )
    return csv_path, md_path


def _run_entries(store: ModelStore, rows: pd.DataFrame) -> list[tuple[str, str]]:
    """Open-in-restore choices: (label, model-store entry id) for each run that has weights."""
    choices = []
    for (variant, seed, run), _ in rows.groupby(["variant", "seed", "run"], sort=False):
        folder = ablation_runs_dir(store) / run
        if (folder / MODEL_FILE).is_file() or (folder / SHIPPED_WEIGHTS_FILE).is_file():
            choices.append((f"{variant} · seed {seed} ({run})", f"results/runs/{run}"))
    return choices


def render(
    store: ModelStore,
    csv_path,
    task,
    level,
    ablation,
    variants,
    seeds,
    baseline,
    cost="MACs",
    spread="min-max",
    only_differing=True,
    protocol=None,
):
    """Every output of the explorer for one selection, all of one test-time protocol (`protocol`, or the
    one `views.pick_protocol` falls back to):
    (status, table, knob diff, csv file, md file, how-measured text, 4 figures, open-in-restore dropdown)."""
    table, message = load_table(csv_path)
    blank = views.empty_figure("No data")
    if table is None:
        return (message, None, None, None, None, "", blank, blank, blank, blank, gr.update(choices=[], value=None))
    rows, protocol = views.selected_rows(table, task, level, ablation, protocol, variants, seeds)
    if not variants or not seeds or rows.empty:
        note = "Select at least one variant and one seed."
        return (note, None, None, None, None, "", blank, blank, blank, blank, gr.update(choices=[], value=None))
    if baseline not in set(rows["variant"]):
        baseline = rt.default_baseline(rows)
    summary = rt.summarize(rows, baseline)
    shown = rt.display_table(summary, baseline)
    markdown = rt.markdown_summary(summary, baseline)
    csv_file, md_file = _export(
        shown,
        f"**{task}, level {level}, ablation {ablation}, protocol {protocol}**\n\n" + markdown,
        f"ablation_{task}_{level}_{ablation}_{protocol}",
    )
    run_variants = dict(zip(rows["run"], rows["variant"]))
    curves = rt.validation_curves(rt.read_run_logs(ablation_runs_dir(store), run_variants), run_variants)
    missing_seeds = summary.loc[summary["n_seeds"] < len(seeds), "variant"].tolist()
    status = (
        f"protocol **{protocol}** · {len(summary)} variants · {len(seeds)} seeds · "
        f"{rows['image'].nunique()} test images · baseline **{baseline}**"
    )
    if missing_seeds:
        status += f" · fewer seeds than selected for: {', '.join(missing_seeds)}"
    entries = _run_entries(store, rows)
    return (
        status,
        shown,
        rt.config_differences(rows, baseline, only_differing=only_differing),
        csv_file,
        md_file,
        "\n\n".join(
            part
            for part in (
                "**How these numbers were measured**\n\n" + rt.protocol_text(rows),
                views.answers_text(table, task, level, ablation, protocol, variants, seeds),
            )
            if part
        ),
        views.psnr_by_variant_figure(summary, rt.seed_means(rows), baseline),
        views.validation_curve_figure(curves, spread=spread),
        views.pareto_figure(summary, COSTS.get(cost, "macs")),
        views.delta_heatmap_figure(rt.per_image_delta(rows, baseline), baseline, protocol),
        gr.update(choices=entries, value=entries[0][1] if entries else None),
    )


# ----------------------------------------------------------------------------------------------------
# The user's own runs (the train tab writes them under $HINET_RUNS_DIR)


USER_RUN_COLUMNS = [
    "run",
    "task",
    "model",
    "steps",
    "last val PSNR (dB)",
    "best val PSNR (dB)",
    "test PSNR (dB, eval.csv)",
    "train time (s)",
    "weights",
]


def user_runs(runs_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(table of runs, their logs, run -> label) for every run folder with a log under `runs_dir`."""
    from hinet.config import load_config

    rows, logs, labels = [], [], {}
    for folder in sorted(Path(runs_dir).glob(f"*/{LOG_FILE}")):
        run_dir = folder.parent
        run = run_dir.name
        try:
            log_frame = rt.read_run_log(folder)
        except HINetError as error:
            log.warning("skipped run %s: %s", run, error)
            continue
        task, model, steps = "?", "?", ""
        if (run_dir / CONFIG_FILE).is_file():
            try:
                cfg = load_config(run_dir / CONFIG_FILE)
                task, model = cfg.task, cfg.model_config().describe()
                steps = cfg.steps
            except HINetError as error:
                model = f"unreadable config ({error})"
        done = int(log_frame["step"].max()) if not log_frame.empty else 0
        val = log_frame["val_psnr"].dropna()
        test_psnr = None
        if (run_dir / EVAL_FILE).is_file():
            try:
                scores = pd.read_csv(run_dir / EVAL_FILE)
                # the model's own per-image rows, one pass: not baselines, means or other protocols
                keep = (scores.get("method") == "hinet") & (scores.get("image") != "mean")
                if "stats" in scores:
                    keep &= scores["stats"].fillna("").isin(["", "whole"])
                scores = scores[keep] if "method" in scores and "image" in scores else scores
                if "psnr" in scores:
                    test_psnr = round(float(pd.to_numeric(scores["psnr"], errors="coerce").mean()), 2)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
                test_psnr = None
        rows.append(
            {
                "run": run,
                "task": task,
                "model": model,
                "steps": f"{done}/{steps}" if steps else str(done),
                "last val PSNR (dB)": round(float(val.iloc[-1]), 2) if len(val) else None,
                "best val PSNR (dB)": round(float(val.max()), 2) if len(val) else None,
                "test PSNR (dB, eval.csv)": test_psnr,
                "train time (s)": round(float(log_frame["wall"].max()), 1) if log_frame["wall"].notna().any() else None,
                "weights": "yes" if (run_dir / MODEL_FILE).is_file() else "no",
            }
        )
        logs.append(log_frame.assign(run=run))
        labels[run] = f"my run {run}"
    table = pd.DataFrame(rows, columns=USER_RUN_COLUMNS)
    return (
        table,
        (pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["run", *rt.LOG_COLUMNS])),
        labels,
    )


def render_user_runs(store: ModelStore):
    runs_dir = store.runs_dir
    table, logs, labels = user_runs(runs_dir)
    if table.empty:
        note = f"No runs of yours yet in `{runs_dir}`: train one in the *Train a variant* tab."
        return note, table, views.empty_figure("No runs yet"), gr.update(choices=[], value=None)
    curves = rt.validation_curves(logs, {run: run for run in labels})
    choices = [(labels[run], f"runs/{run}") for run in table.loc[table["weights"] == "yes", "run"]]
    note = f"{len(table)} run(s) in `{runs_dir}` (set `HINET_RUNS_DIR` to use another folder)."
    return (
        note,
        table,
        views.validation_curve_figure(curves),
        gr.update(choices=choices, value=choices[-1][1] if choices else None),
    )


# ----------------------------------------------------------------------------------------------------
# Opening a run in the restore tab


@user_errors
def open_in_restore(store: ModelStore, entry_id, current_task, uploads=None):
    """Switch to the restore tab with this run's weights selected.

    When the task changes, the restore tab's own task listener resets its variant list; the wanted entry
    is kept as pending and applied by `apply_pending` once that reset has happened.
    """
    if not entry_id:
        raise gr.Error("Pick a run first.")
    entry = store.find_entry(entry_id)
    if not entry.trained:
        gr.Warning(f"{entry_id} is untrained (random weights).")
    if entry.task and entry.task != current_task:
        return gr.update(value=entry.task), gr.skip(), (entry_id, time.monotonic()), gr.Tabs(selected="restore")
    return gr.skip(), _variants_update(store, entry_id, current_task, uploads), None, gr.Tabs(selected="restore")


def open_in_features(store: ModelStore, entry_id, uploads=None):
    """Switch to the feature-maps tab with this run's weights as its variant (the choices refreshed, since
    the tab lists its models once at start-up)."""
    if not entry_id:
        raise gr.Error("Pick a run first.")
    store.find_entry(entry_id)  # a clear error for a run that is gone
    choices = [(entry.label, entry.id) for entry in store.for_session(uploads).list_entries()]
    if entry_id not in [value for _, value in choices]:
        choices.append((entry_id, entry_id))
    return gr.update(choices=choices, value=entry_id), gr.Tabs(selected="features")


def _variants_update(store: ModelStore, entry_id: str, task: str | None, uploads=None):
    """The restore picker with the entry selected; the choices are refreshed too, since a run finished after
    the restore tab last listed its models is not among its choices yet (the session's uploads stay listed)."""
    choices = task_model_choices(store.for_session(uploads), task)[0] if task else []
    if entry_id not in [value for _, value in choices]:
        choices.append((entry_id, entry_id))
    return gr.update(choices=choices, value=[entry_id])


def apply_pending(store: ModelStore, pending, current_variants, current_task, uploads=None):
    if not pending:
        return gr.skip(), None
    entry_id, since = pending
    if time.monotonic() - since > PENDING_OPEN_SECONDS:
        return gr.skip(), None
    if current_variants == [entry_id]:
        return gr.skip(), None
    return _variants_update(store, entry_id, current_task, uploads), None


def render_ladder(path, task, level):
    """The budget-ladder section for one task and level: figure, sentences, verdicts, the table, CSV."""
    table, message = load_table(Path(path))
    if table is None:
        return views.ladder_figure(pd.DataFrame()), message, None, None, None
    view = views.ladder_view(table, task, level)
    csv = None
    if not view["ladder"].empty:
        csv, _ = _export(view["ladder"], rt.frame_to_markdown(view["ladder"]), f"ladder_{task}_{level}")
    return view["figure"], view["text"], view["verdicts"], view["ladder"], csv


def budget_update(path, task, level, ablation):
    """The budget picker for the task and level; its value is the shown ablation when that is a rung."""
    table, _ = load_table(Path(path))
    choices = views.ladder_budgets(table, task, level) if table is not None else []
    values = [value for _, value in choices]
    return gr.update(choices=choices, value=ablation if ablation in values else None, visible=bool(choices))


# ----------------------------------------------------------------------------------------------------
# Layout


def build_tab(ctx: AppContext) -> None:
    gr.Markdown(
        "### Ablations\nEach variant differs from the HIN baseline in one knob and was trained with one or "
        "more seeds (a difference is called significant only over 2+ paired seeds). **Δ** is paired by (seed, image) within one test-time protocol; its 95% interval is a "
        "hierarchical bootstrap (seeds, then images within each seed), so an interval that excludes 0 is a "
        "difference the seeds agree on. **Δ per seed** shows each seed's own difference."
    )
    store = ctx.store
    table, message = load_table(ablation_csv(store))
    first = views.scope(table) if table is not None else None
    if first:
        initial = render(
            store,
            str(ablation_csv(store)),
            first["task"],
            first["level"],
            first["ablation"],
            first["variants"],
            first["seeds"],
            first["baseline"],
            protocol=first["protocol"],
        )
    else:
        initial = (message, None, None, None, None, "", None, None, None, None, gr.update(choices=[], value=None))
    (
        status_value,
        table_value,
        diff_value,
        csv_value,
        md_value,
        measurement_value,
        psnr_value,
        curve_value,
        pareto_value,
        heatmap_value,
        open_value,
    ) = initial
    user_note_value, user_table_value, user_plot_value, user_choice_value = render_user_runs(store)
    csv_path = gr.State(str(ablation_csv(store)))

    with gr.Row():
        task = gr.Dropdown(first["tasks"] if first else [], value=first and first["task"], label="Task")
        level = gr.Dropdown(first["levels"] if first else [], value=first and first["level"], label="Level")
        ablation = gr.Dropdown(
            first["ablations"] if first else [], value=first and first["ablation"], label="Ablation axis"
        )
        budget = gr.Dropdown(
            [],
            value=None,
            label="Budget (training steps of the norm ladder)",
            info="Picks the ladder rung shown below",
        )
        baseline = gr.Dropdown(
            first["variants"] if first else [],
            value=first and first["baseline"],
            label="Baseline (Δ is measured against it)",
        )
        reload_button = gr.Button("Reload results", scale=0)
    protocol = gr.Radio(
        first["protocols"] if first else [],
        value=first and first["protocol"],
        label=views.PROTOCOL_LABEL,
        info=views.PROTOCOL_INFO,
    )
    with gr.Row():
        variants = gr.Dropdown(
            first["variants"] if first else [], value=first and first["variants"], multiselect=True, label="Variants"
        )
        seeds = gr.CheckboxGroup(first["seeds"] if first else [], value=first and first["seeds"], label="Seeds")
    status = gr.Markdown(status_value)
    summary_table = gr.Dataframe(
        table_value,
        label="Per variant: mean and std over seeds, paired Δ vs the baseline (click a header to sort)",
        interactive=False,
        wrap=True,
    )
    with gr.Row():
        csv_file = gr.File(csv_value, label="Download CSV", interactive=False)
        md_file = gr.File(md_value, label="Download Markdown", interactive=False)
    with gr.Accordion("Config knobs (diff only)", open=True):
        only_differing = gr.Checkbox(value=True, label="Show only the knobs that differ from the baseline")
        diff_table = gr.Dataframe(
            diff_value, interactive=False, label="Knobs per variant (blank = same as the baseline)"
        )
        diff_csv = gr.File(
            export_csv(diff_value, "ablation_knobs"), label="Download CSV", interactive=False, height=DOWNLOAD_HEIGHT
        )
    measurement = gr.Markdown(measurement_value)
    with gr.Row():
        psnr_plot = gr.Plot(psnr_value, label="PSNR by variant", elem_id="ablation-psnr")
        curve_plot = gr.Plot(curve_value, label="Validation PSNR vs step")
    with gr.Row():
        spread = gr.Radio(list(SPREADS), value=SPREADS[0], label="Curve spread across seeds")
        cost = gr.Radio(list(COSTS), value="MACs", label="Pareto cost axis")
    with gr.Row():
        pareto_plot = gr.Plot(pareto_value, label="PSNR vs cost")
        heatmap_plot = gr.Plot(heatmap_value, label="Per-image Δ")
    gr.Markdown(PRODUCED_BY)
    with gr.Row():
        open_choice = gr.Dropdown(
            open_value["choices"], value=open_value["value"], label="Open a run's weights in the restore tab"
        )
        open_button = gr.Button("Open in Restore", scale=0)
        open_features_button = gr.Button("Open in Feature maps", scale=0)

    with gr.Accordion("Budget ladder: does the ranking hold as training gets longer?", open=True):
        gr.Markdown(
            "The norm axis trained at 300, 1k, 3k and 10k steps (`scripts/run_ladder.sh`), each norm at the "
            "learning rate its own search chose on validation. Each point is the paired Δ to HIN at that budget "
            "and protocol with its 95% hierarchical interval; the verdicts are computed from the same rows."
        )
        ladder_text = gr.Markdown()
        ladder_plot = gr.Plot(label="Ranking vs budget")
        ladder_verdicts = gr.Dataframe(
            interactive=False, wrap=True, label="The paper's claims per protocol (rows) and budget (columns)"
        )
        verdicts_csv = gr.File(
            label="Download the verdicts as CSV",
            interactive=False,
            height=DOWNLOAD_HEIGHT,
            elem_id="ablation-verdicts-csv",
        )
        with gr.Accordion("The numbers behind the figure", open=False):
            ladder_table = gr.Dataframe(interactive=False, label="Per protocol, budget and variant")
            ladder_csv = gr.File(label="Download CSV", interactive=False)

    gr.Markdown("### Your runs (trained in the app)")
    user_note = gr.Markdown(user_note_value)
    user_table = gr.Dataframe(user_table_value, interactive=False, label="Runs under $HINET_RUNS_DIR")
    user_csv = gr.File(
        export_csv(user_table_value, "my_runs"), label="Download CSV", interactive=False, height=DOWNLOAD_HEIGHT
    )
    user_plot = gr.Plot(user_plot_value, label="Validation PSNR of your runs")
    gr.Markdown(USER_RUNS_PRODUCED_BY)
    with gr.Row():
        user_choice = gr.Dropdown(
            user_choice_value["choices"],
            value=user_choice_value["value"],
            label="Open one of your runs in the restore tab",
        )
        user_open_button = gr.Button("Open in Restore", scale=0)
        user_refresh = gr.Button("Refresh my runs", scale=0)

    outputs = [
        status,
        summary_table,
        diff_table,
        csv_file,
        md_file,
        measurement,
        psnr_plot,
        curve_plot,
        pareto_plot,
        heatmap_plot,
        open_choice,
    ]
    render_inputs = [csv_path, task, level, ablation, variants, seeds, baseline, cost, spread, only_differing, protocol]
    user_outputs = [user_note, user_table, user_plot, user_choice]

    @user_errors
    def rescope(path, task_value, level_value, ablation_value, protocol_value):
        loaded, note = load_table(path)
        if loaded is None:
            empty = gr.update(choices=[], value=None)
            return (empty, empty, empty, empty, gr.update(choices=[], value=[]), gr.update(choices=[], value=[]), empty)
        chosen = views.scope(loaded, task_value, level_value, ablation_value, protocol_value)
        return (
            gr.update(choices=chosen["tasks"], value=chosen["task"]),
            gr.update(choices=chosen["levels"], value=chosen["level"]),
            gr.update(choices=chosen["ablations"], value=chosen["ablation"]),
            gr.update(choices=chosen["protocols"], value=chosen["protocol"]),
            gr.update(choices=chosen["variants"], value=chosen["variants"]),
            gr.update(choices=chosen["seeds"], value=chosen["seeds"]),
            gr.update(choices=chosen["variants"], value=chosen["baseline"]),
        )

    scope_inputs = [csv_path, task, level, ablation, protocol]
    scope_outputs = [task, level, ablation, protocol, variants, seeds, baseline]
    render_event = user_errors(partial(render, store))

    def reload_results(path):
        _read_cached.cache_clear()
        return path

    ladder_event = user_errors(render_ladder)
    ladder_outputs = [ladder_plot, ladder_text, ladder_verdicts, ladder_table, ladder_csv]
    budget_event = user_errors(budget_update)

    reload_button.click(reload_results, csv_path, csv_path, api_visibility="private").then(
        rescope, scope_inputs, scope_outputs, api_visibility="private"
    ).then(render_event, render_inputs, outputs, api_name="ablation_table").then(
        ladder_event, [csv_path, task, level], ladder_outputs, api_name="ablation_ladder"
    ).then(budget_event, [csv_path, task, level, ablation], budget, api_visibility="private")
    for control in (task, level, ablation, protocol):  # a protocol may lack some runs: its variants and seeds
        event = control.input(rescope, scope_inputs, scope_outputs, api_visibility="private").then(
            render_event, render_inputs, outputs, api_visibility="private"
        )
        if control in (task, level, ablation):
            event.then(budget_event, [csv_path, task, level, ablation], budget, api_visibility="private")
        if control in (task, level):
            event.then(ladder_event, [csv_path, task, level], ladder_outputs, api_visibility="private")
    # picking a budget shows that rung: the same as picking its ablation
    budget.input(lambda rung, current: rung or current, [budget, ablation], ablation, api_visibility="private").then(
        rescope, scope_inputs, scope_outputs, api_visibility="private"
    ).then(render_event, render_inputs, outputs, api_visibility="private")
    ctx.on_page_load(ladder_event, [csv_path, task, level], ladder_outputs)
    ctx.on_page_load(budget_event, [csv_path, task, level, ablation], budget)
    for control in (variants, seeds, baseline, cost, spread, only_differing):
        control.input(render_event, render_inputs, outputs, api_visibility="private", trigger_mode="always_last")
    # The tables without an export of their own: offered as shown, whichever event filled them.
    for shown, download, stem in (
        (diff_table, diff_csv, "ablation_knobs"),
        (ladder_verdicts, verdicts_csv, "ladder_verdicts"),
        (user_table, user_csv, "my_runs"),
    ):
        shown.change(table_csv_event(stem), shown, download, api_visibility="private")

    user_refresh.click(partial(render_user_runs, store), None, user_outputs, api_name="user_runs")
    # Runs finished in the train tab appear when the user comes back to this tab.
    ctx.tabs.select(partial(render_user_runs, store), None, user_outputs, api_visibility="private")

    if ctx.restore_task is not None and ctx.restore_variants is not None:
        pending = gr.State(None)
        for choice, button in ((open_choice, open_button), (user_choice, user_open_button)):
            button.click(
                partial(open_in_restore, store),
                [choice, ctx.restore_task, ctx.session_uploads()],
                [ctx.restore_task, ctx.restore_variants, pending, ctx.tabs],
                api_visibility="private",
            )
        ctx.restore_variants.change(
            partial(apply_pending, store),
            [pending, ctx.restore_variants, ctx.restore_task, ctx.session_uploads()],
            [ctx.restore_variants, pending],
            api_visibility="private",
        )
    else:
        for button in (open_button, user_open_button):
            button.interactive = False
    if ctx.features_variant is not None:
        opened = open_features_button.click(
            partial(open_in_features, store),
            [open_choice, ctx.session_uploads()],
            [ctx.features_variant, ctx.tabs],
            api_visibility="private",
        )
        if ctx.features_refresh is not None:
            opened.then(*ctx.features_refresh, api_visibility="private")
    else:
        open_features_button.interactive = False


__all__ = [
    "build_tab",
    "render",
    "render_ladder",
    "load_table",
    "user_runs",
    "render_user_runs",
    "open_in_restore",
    "open_in_features",
]
