"""The HINet Explorer Gradio app: `build_demo()` assembles one tab per module under `app/`."""

from __future__ import annotations

import gradio as gr

from app.context import TAB_IDS, AppContext, uploads_state
from app.models import ModelStore
from app.uploads import MAX_UPLOAD_MB

TITLES = {
    "restore": "Restore & compare",
    "features": "Inside HIN blocks",
    "learn": "Learn normalization",
    "ablation": "Ablations",
    "train": "Train a variant",
}
# Gradio has one size limit for every upload, images too: it is the checkpoint limit (an official .pth is
# ~355 MB). Images are refused by their pixel count long before that (hinet.image).
MAX_FILE_SIZE = f"{MAX_UPLOAD_MB}mb"
QUEUE_SIZE = 16
THEME = "soft"
CSS = ".gradio-container {max-width: 1500px !important}"


def build_demo(store: ModelStore | None = None) -> gr.Blocks:
    """The whole app over `store` (by default the project's results/ and $HINET_RUNS_DIR); the restore tab
    comes first because the other tabs read its components."""
    from app import ablation_tab, features_tab, learn_tab, restore_tab, train_tab, uploads_panel

    builders = {
        "restore": restore_tab.build_tab,
        "features": features_tab.build_tab,
        "learn": learn_tab.build_tab,
        "ablation": ablation_tab.build_tab,
        "train": train_tab.build_tab,
    }
    with gr.Blocks(title="HINet Explorer") as demo:
        gr.Markdown(
            "# HINet Explorer\nCompare HINet variants, look inside Half Instance Normalization blocks and "
            "learn how normalization behaves ([paper](https://arxiv.org/abs/2105.06086)). "
            "Models marked *untrained* have random weights: they show the pipeline, not HINet's quality. "
            "Your own checkpoint: open the sidebar (top left)."
        )
        uploads = uploads_state()
        with gr.Tabs() as tabs:
            ctx = AppContext(tabs=tabs, blocks=demo, store=store or ModelStore(), uploads=uploads)
            for tab_id in TAB_IDS:
                with gr.Tab(TITLES[tab_id], id=tab_id):
                    builders[tab_id](ctx)
        uploads_panel.build_panel(ctx)
    # One CPU: requests run one at a time in a bounded queue rather than competing for cores.
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return demo


def launch_kwargs() -> dict:
    """Arguments every launch uses (app.py, tests, the benchmark)."""
    return dict(max_file_size=MAX_FILE_SIZE, theme=THEME, css=CSS)


__all__ = ["build_demo", "launch_kwargs", "TITLES", "MAX_FILE_SIZE"]
