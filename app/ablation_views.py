"""The ablation explorer's selection logic and Plotly figures (also the train tab's), built from
`hinet.results_table` frames.

Pure functions of data frames (no Gradio), so tests check the choices and the traces directly; the tab
(`app/ablation_tab.py`) only wires them to widgets.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hinet import results_table as rt

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
HEIGHT = 380


# ----------------------------------------------------------------------------------------------------
# Selection

PROTOCOL_LABEL = "Test-time protocol"
PROTOCOL_INFO = rt.PROTOCOL_MEANING[0].upper() + rt.PROTOCOL_MEANING[1:]  # the radio's one-line explanation


def _level_sort_key(level: str):
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


def pick_protocol(rows: pd.DataFrame, wanted: str | None = None) -> str | None:
    """`wanted` when `rows` have it, else the protocol a view opens on ("whole" when present)."""
    return wanted if wanted in rt.protocols(rows) else rt.preferred_protocol(rows)


def scope(table: pd.DataFrame, task=None, level=None, ablation=None, protocol=None) -> dict:
    """The choices each filter offers and a valid selection, keeping the given values where they exist.

    Protocols are those the chosen ablation has; variants and seeds are those of the chosen protocol, since
    a run may not have been evaluated under every protocol.
    """
    tasks = list(dict.fromkeys(table["task"]))
    task = task if task in tasks else tasks[0]
    rows = table[table["task"] == task]
    levels = sorted(dict.fromkeys(rows["level"]), key=_level_sort_key)
    level = level if level in levels else levels[0]
    rows = rows[rows["level"] == level]
    ablations = list(dict.fromkeys(rows["ablation"]))
    ablation = ablation if ablation in ablations else ablations[0]
    rows = rows[rows["ablation"] == ablation]
    protocols = rt.protocols(rows)
    protocol = pick_protocol(rows, protocol)
    rows = rt.select(rows, protocol=protocol)
    return dict(
        tasks=tasks,
        task=task,
        levels=levels,
        level=level,
        ablations=ablations,
        ablation=ablation,
        protocols=protocols,
        protocol=protocol,
        variants=rt.variant_order(rows),
        seeds=sorted(int(s) for s in set(rows["seed"])),
        baseline=rt.default_baseline(rows),
    )


def selected_rows(
    table: pd.DataFrame, task, level, ablation, protocol, variants, seeds
) -> tuple[pd.DataFrame, str | None]:
    """(rows of the selection, their protocol): one protocol only, so every statistic drawn from them is
    of one kind of test-time statistics; an unknown or missing protocol falls back as in `pick_protocol`."""
    rows = rt.select(table, task=task, level=level, ablation=ablation, variants=variants or None, seeds=seeds or None)
    protocol = pick_protocol(rows, protocol)
    return rt.select(rows, protocol=protocol), protocol


def answers_text(table: pd.DataFrame, task, level, ablation, protocol, variants, seeds) -> str:
    """The computed answers of the selection beyond the claims, as markdown: HIN's two knobs apart under
    the shown protocol (`rt.knob_markdown`), and whether larger training patches remove the need for tiled
    scoring (`rt.patch_markdown`: a protocol's gain pairs each run's scores under two protocols, so it reads
    every protocol of the selected runs). Empty when the selection holds no such comparison."""
    rows = rt.select(table, task=task, level=level, ablation=ablation, variants=variants or None, seeds=seeds or None)
    shown = rt.select(rows, protocol=pick_protocol(rows, protocol))
    return "\n".join([*rt.knob_markdown(shown), *rt.patch_markdown(rows)]).strip()


# ----------------------------------------------------------------------------------------------------
# Figures


def _protocol_note(summary: pd.DataFrame) -> str:
    """ " · protocol whole" for a summary that names its protocol (titles say which statistics they show)."""
    if "protocol" in summary.columns and summary["protocol"].nunique() == 1:
        return f" · protocol {summary['protocol'].iloc[0]}"
    return ""


def _color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _layout(figure: go.Figure, title: str, x: str, y: str) -> go.Figure:
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=y,
        height=HEIGHT,
        template="plotly_white",
        margin=dict(l=60, r=20, t=50, b=50),
        legend=dict(font=dict(size=10)),
    )
    return figure


def empty_figure(message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    figure.update_layout(height=HEIGHT, template="plotly_white")
    return figure


def psnr_by_variant_figure(summary: pd.DataFrame, per_seed: pd.DataFrame, baseline: str) -> go.Figure:
    """Mean PSNR per variant with ± std error bars (over seeds) and every seed's score as a dot."""
    order = list(summary["variant"])
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=order,
            y=summary["psnr_mean"],
            mode="markers",
            name="mean ± std over seeds",
            marker=dict(size=14, symbol="line-ew-open", line=dict(width=3), color="#333333"),
            error_y=dict(type="data", array=summary["psnr_std"].fillna(0.0), visible=True, thickness=1.5, width=10),
            hovertemplate="%{x}<br>mean %{y:.2f} dB<extra></extra>",
        )
    )
    seeds = per_seed[per_seed["variant"].isin(order)]
    figure.add_trace(
        go.Scatter(
            x=seeds["variant"],
            y=seeds["psnr"],
            mode="markers",
            name="one seed",
            marker=dict(size=8, color=[_color(order.index(v)) for v in seeds["variant"]], opacity=0.75),
            customdata=seeds["seed"],
            hovertemplate="%{x}<br>seed %{customdata}: %{y:.2f} dB<extra></extra>",
        )
    )
    if baseline in order:
        mean = float(summary.loc[summary["variant"] == baseline, "psnr_mean"].iloc[0])
        figure.add_hline(y=mean, line=dict(dash="dot", color="#999999"), annotation_text=f"{baseline} mean")
    figure.update_xaxes(categoryorder="array", categoryarray=order)
    return _layout(figure, f"Test PSNR by variant{_protocol_note(summary)}", "variant", "PSNR (dB), image-averaged")


def validation_curve_figure(curves: pd.DataFrame, spread: str = "min-max") -> go.Figure:
    """Validation PSNR vs step: mean over seeds per variant, shaded min-max (or ± std) across seeds."""
    if curves.empty:
        return empty_figure("No validation PSNR in the run logs of these variants")
    figure = go.Figure()
    for index, (variant, points) in enumerate(curves.groupby("variant", sort=False)):
        color = _color(index)
        if spread == "std":
            low = points["mean"] - points["std"].fillna(0.0)
            high = points["mean"] + points["std"].fillna(0.0)
        else:
            low, high = points["min"], points["max"]
        if (points["n"] > 1).any():
            figure.add_trace(
                go.Scatter(
                    x=points["step"],
                    y=high,
                    mode="lines",
                    line=dict(width=0),
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=variant,
                    name=f"{variant} {spread} high",
                )
            )
            figure.add_trace(
                go.Scatter(
                    x=points["step"],
                    y=low,
                    mode="lines",
                    line=dict(width=0),
                    fill="tonexty",
                    fillcolor=_rgba(color, 0.18),
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=variant,
                    name=f"{variant} {spread} low",
                )
            )
        figure.add_trace(
            go.Scatter(
                x=points["step"],
                y=points["mean"],
                mode="lines+markers",
                name=variant,
                line=dict(color=color),
                marker=dict(size=4),
                legendgroup=variant,
                customdata=points["n"],
                hovertemplate=f"{variant}<br>step %{{x}}: %{{y:.2f}} dB (%{{customdata}} seeds)<extra></extra>",
            )
        )
    return _layout(figure, f"Validation PSNR (mean over seeds, {spread} shaded)", "step", "validation PSNR (dB)")


COST_LABELS = {
    "macs": "MACs (G, 256x256)",
    "latency_ms": "latency (ms)",
    "params": "parameters",
    "train_seconds": "train time (s)",
}


def pareto_figure(summary: pd.DataFrame, cost: str = "macs") -> go.Figure:
    """Mean PSNR against a cost, with the Pareto front (no other variant is cheaper and better)."""
    scale = 1e9 if cost == "macs" else 1.0
    x = summary[cost].to_numpy(dtype=float) / scale
    y = summary["psnr_mean"].to_numpy(dtype=float)
    valid = np.isfinite(x) & np.isfinite(y)
    if not valid.any():
        return empty_figure(f"No {COST_LABELS.get(cost, cost)} in the table")
    on_front = np.zeros_like(valid)
    on_front[valid] = rt.pareto_front(x[valid], y[valid])
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x[valid],
            y=y[valid],
            mode="markers+text",
            name="variants",
            text=summary["variant"][valid],
            textposition="top center",
            marker=dict(size=10, color=np.where(on_front[valid], "#d62728", "#1f77b4")),
            hovertemplate="%{text}<br>%{x:.3g}, %{y:.2f} dB<extra></extra>",
        )
    )
    front = np.argsort(x[on_front])
    figure.add_trace(
        go.Scatter(
            x=x[on_front][front],
            y=y[on_front][front],
            mode="lines",
            name="Pareto front",
            line=dict(color="#d62728", dash="dash", shape="hv"),
        )
    )
    return _layout(
        figure,
        f"PSNR vs {COST_LABELS.get(cost, cost)}{_protocol_note(summary)}",
        COST_LABELS.get(cost, cost),
        "PSNR (dB)",
    )


def delta_heatmap_figure(per_image: pd.DataFrame, baseline: str, protocol: str | None = None) -> go.Figure:
    """Paired Δ PSNR to the baseline (mean over seeds) for each test image and variant (of one protocol)."""
    if per_image.empty or per_image.shape[1] == 0:
        return empty_figure("Select at least one variant besides the baseline")
    values = per_image.to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0
    text = [["" if math.isnan(v) else f"{v:+.2f}" for v in row] for row in values]
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=list(per_image.columns),
            y=list(per_image.index),
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu",
            text=text,
            texttemplate="%{text}",
            colorbar=dict(title="Δ dB"),
            hovertemplate="%{y} · %{x}: %{z:+.3f} dB<extra></extra>",
        )
    )
    note = f" · protocol {protocol}" if protocol else ""
    return _layout(figure, f"Per-image Δ PSNR vs {baseline} (blue: better){note}", "variant", "test image")


def training_figure(log: pd.DataFrame, title: str = "Training") -> go.Figure:
    """Live curves of one run: training loss (left) and validation PSNR (right) against the step."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("training loss", "validation PSNR (dB)"))
    if not log.empty:
        losses = log[log["loss"].notna()]
        figure.add_trace(
            go.Scatter(x=losses["step"], y=losses["loss"], mode="lines", name="loss", line=dict(color=_color(0))),
            row=1,
            col=1,
        )
        val = log[log["val_psnr"].notna()]
        figure.add_trace(
            go.Scatter(
                x=val["step"], y=val["val_psnr"], mode="lines+markers", name="val PSNR", line=dict(color=_color(1))
            ),
            row=1,
            col=2,
        )
    figure.update_xaxes(title_text="step")
    figure.update_layout(
        title=title, height=HEIGHT, template="plotly_white", showlegend=False, margin=dict(l=60, r=20, t=60, b=50)
    )
    return figure


__all__ = [
    "PROTOCOL_LABEL",
    "PROTOCOL_INFO",
    "pick_protocol",
    "scope",
    "selected_rows",
    "empty_figure",
    "psnr_by_variant_figure",
    "validation_curve_figure",
    "pareto_figure",
    "delta_heatmap_figure",
    "training_figure",
]


# ----------------------------------------------------------------------------------------------------
# The budget ladder (norm300 / norm1k / norm3k / norm10k of one task and level)


def ladder_rows(table: pd.DataFrame, task, level) -> pd.DataFrame:
    """The ladder rungs' rows of one task and level (empty when the table has no ladder there)."""
    rows = rt.select(table, task=task, level=level)
    return rows[rows["ablation"].isin(rt.ladder_ablations(rows))]


def ladder_figure(ladder: pd.DataFrame, baseline: str = "hin") -> go.Figure:
    """Ranking vs budget: Δ PSNR to `baseline` (paired, 95% hierarchical interval) against training steps
    on a log axis, one line per variant, one panel per test-time protocol (`rt.budget_ladder` rows)."""
    if ladder.empty:
        return empty_figure("No budget ladder for this task yet (python -m hinet.sweep --ladder)")
    present = [p for p in rt.STATS_PROTOCOLS if p in set(ladder["protocol"])]
    figure = make_subplots(
        rows=1, cols=len(present), shared_yaxes=True, subplot_titles=[f"protocol {p}" for p in present]
    )
    variants = list(dict.fromkeys(ladder["variant"]))
    for column, protocol in enumerate(present, 1):
        for index, variant in enumerate(variants):
            points = ladder[(ladder["protocol"] == protocol) & (ladder["variant"] == variant)].sort_values("steps")
            if points.empty:
                continue
            seeds = points["n_seeds"].astype(int)
            paired = points["n_paired_seeds"].astype(int)
            figure.add_trace(
                go.Scatter(
                    x=points["steps"],
                    y=points["delta"],
                    mode="lines+markers",
                    name=variant,
                    legendgroup=variant,
                    showlegend=column == 1,
                    line=dict(color=_color(index), dash="dot" if variant == baseline else None),
                    error_y=dict(
                        type="data",
                        symmetric=False,
                        visible=True,
                        array=(points["high"] - points["delta"]).fillna(0.0),
                        arrayminus=(points["delta"] - points["low"]).fillna(0.0),
                    ),
                    customdata=np.stack([seeds, points["psnr_mean"], paired], axis=-1),
                    hovertemplate=(
                        f"{variant}, {protocol}<br>%{{x}} steps: Δ %{{y:+.2f}} dB vs {baseline} over "
                        f"%{{customdata[2]}} paired seed(s)<br>%{{customdata[0]}} seed(s), mean "
                        "%{customdata[1]:.2f} dB<extra></extra>"
                    ),
                ),
                row=1,
                col=column,
            )
        figure.update_xaxes(type="log", title_text="training steps (log)", row=1, col=column)
    figure.add_hline(y=0.0, line=dict(color="#666666", width=1))
    figure.update_yaxes(title_text=f"Δ PSNR vs {baseline} (dB)", row=1, col=1)
    return _layout(figure, f"Ranking vs budget: paired Δ to {baseline}, 95% interval", "", "")


def ladder_budgets(table: pd.DataFrame, task, level) -> list[tuple[str, str]]:
    """Budget picker choices: ("3k steps (norm3k)", "norm3k") for each ladder rung of the task and level."""
    rows = rt.select(table, task=task, level=level)
    return [(f"{rt.format_steps(rt.budget_of(name))} steps ({name})", name) for name in rt.ladder_ablations(rows)]


def ladder_view(table: pd.DataFrame, task, level, n_resamples: int = rt.DEFAULT_RESAMPLES) -> dict:
    """Everything the tab's ladder section shows for one task and level: the ranking-vs-budget figure,
    generated sentences (Markdown), the verdict grid and the table behind the figure (data frames)."""
    rows = ladder_rows(table, task, level)
    if rows.empty:
        note = "No budget ladder for this task and level yet (`python -m hinet.sweep --ladder`)."
        return {
            "figure": ladder_figure(pd.DataFrame()),
            "text": note,
            "verdicts": pd.DataFrame(),
            "ladder": pd.DataFrame(),
        }
    ladder = rt.budget_ladder(rows, n_resamples=n_resamples)
    sentences = [f"- {s}" for s in rt.ladder_sentences(ladder)] or ["Not enough rungs with HIN yet."]
    text = "\n".join(rt.setup_lines(rows) + sentences)
    shown = ladder.assign(
        per_seed=ladder["per_seed"].map(rt.format_seed_deltas), steps=ladder["steps"].map(rt.format_steps)
    ).round(
        {
            "psnr_mean": rt.PSNR_DIGITS,
            "psnr_std": rt.PSNR_DIGITS,
            "delta": rt.PSNR_DIGITS + 1,
            "low": rt.PSNR_DIGITS + 1,
            "high": rt.PSNR_DIGITS + 1,
        }
    )
    return {
        "figure": ladder_figure(ladder),
        "text": text,
        "verdicts": rt.verdict_grid(rt.ladder_claims(rows, n_resamples=n_resamples)),
        "ladder": shown,
    }
