"""The "Your checkpoints" sidebar: upload a checkpoint, name it, and find it in every tab's model lists.

Wiring only: checking and loading the file is `app.uploads`; the session's uploads live in
`ctx.session_uploads()` (a per-session `gr.State`), and the tabs read models through
`ctx.store.for_session(uploads)`. Built after the tabs, because an upload refreshes their model pickers.
"""

from __future__ import annotations

import gradio as gr

from app.choices import task_model_choices
from app.context import CPU_QUEUE, AppContext
from app.errors import user_errors
from app.feature_logic import variant_choices
from app.uploads import MAX_UPLOAD_MB, UPLOAD_SUFFIXES, add_upload, uploads_markdown
from hinet.errors import CheckpointError


def build_panel(ctx: AppContext) -> None:
    store, uploads_input = ctx.store, ctx.session_uploads()
    with gr.Sidebar(label="Your checkpoints", open=False, elem_id="uploads-sidebar"):
        gr.Markdown(
            "### Your own checkpoint\nA `.safetensors` of this project or an official HINet `.pth` "
            f"(up to {MAX_UPLOAD_MB} MB). Only weights are read: nothing in the file runs. The model then appears "
            "in every tab's model lists, labelled *uploaded*, for this browser session only."
        )
        checkpoint_box = gr.File(
            label="Checkpoint (.safetensors, .pth)", file_types=list(UPLOAD_SUFFIXES), type="filepath"
        )
        name_box = gr.Textbox(label="Name (optional; default: the file's name)", max_lines=1, placeholder="my_hinet")
        add = gr.Button("Add to my models", variant="primary")
        status = gr.Markdown(elem_id="uploads-status")
        listing = gr.Markdown(uploads_markdown(None), elem_id="uploads-list")

    @user_errors
    def upload(checkpoint, name, uploads):
        if not checkpoint:
            raise CheckpointError("no checkpoint was uploaded: drop a .safetensors or .pth file on the box first")
        uploads, message = add_upload(store, uploads, checkpoint, name)
        return uploads, message, uploads_markdown(uploads)

    # The pickers that list models, with the session's uploads among them; a picker keeps its selection.
    pickers = [p for p in (ctx.restore_variants, ctx.features_variant, ctx.features_variant_b) if p is not None]

    @user_errors
    def refresh_pickers(uploads, task, *selected):
        models = store.for_session(uploads)
        updates = []
        for picker, value in zip(pickers, selected):
            if picker is ctx.restore_variants:
                choices = task_model_choices(models, task)[0] if task else []
            else:
                choices = variant_choices(models)[0]
            updates.append(gr.update(choices=choices, value=value))
        return updates if len(updates) != 1 else updates[0]

    added = add.click(
        upload,
        [checkpoint_box, name_box, uploads_input],
        [uploads_input, status, listing],
        api_name="upload_checkpoint",
        concurrency_id=CPU_QUEUE,
    )
    if pickers and ctx.restore_task is not None:
        added.success(refresh_pickers, [uploads_input, ctx.restore_task, *pickers], pickers, api_visibility="private")


__all__ = ["build_panel"]
