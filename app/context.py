"""What the tabs share: the model store, the page-load hook, and components filled in as the tabs are built
(restore tab first). A tab reads another tab's components from here, never by importing that tab."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from app.models import ModelStore
from app.uploads import UPLOADS_TTL_S, delete_uploads

TAB_IDS = ("restore", "features", "learn", "ablation", "train")
# Events that run a model pass concurrency_id=CPU_QUEUE: with the app's default limit of 1 they queue
# behind each other instead of fighting over the CPU cores.
CPU_QUEUE = "cpu"


def uploads_state() -> gr.State:
    """The session's uploaded checkpoints (`app.models.SessionUploads`, None before the first upload): per
    browser session, so no other session lists or resolves them; their files go when the state expires."""
    return gr.State(None, time_to_live=UPLOADS_TTL_S, delete_callback=delete_uploads)


@dataclass
class AppContext:
    tabs: gr.Tabs  # switch tabs with gr.Tabs(selected=<tab id>)
    blocks: gr.Blocks | None = None  # the app being built: tabs register page-load events on it
    store: ModelStore = field(default_factory=ModelStore)  # every model the tabs offer, and the loaded ones
    # This session's uploads (read it through `session_uploads()`): handlers that list or resolve models take
    # it as an input and read models through `store.for_session(uploads)`.
    uploads: gr.State | None = None
    # The restore tab's current model input, server-side at full precision: an H x W x 3 float32 array (the
    # upload as read, or its degraded copy, unrounded and unclipped), or None before the first restore.
    restore_input: gr.State | None = None
    restore_task: gr.Dropdown | None = None  # the restore tab's task picker
    restore_variants: gr.Dropdown | None = None  # the restore tab's variant picker (multiselect of entry ids)
    features_variant: gr.Dropdown | None = None  # the feature-maps tab's variant picker (one entry id)
    features_variant_b: gr.Dropdown | None = None  # the feature-maps tab's comparison picker (variant B)
    # (fn, inputs, outputs) that redraws the feature-maps tab: chained after another tab sets its variant
    features_refresh: tuple | None = None

    def session_uploads(self) -> gr.State:
        """The session's uploads state; where the app did not create one (a tab built alone), it is created
        here, inside the tab being built (a state directly under gr.Tabs would break the tab bar)."""
        if self.uploads is None:
            self.uploads = uploads_state()
        return self.uploads

    def on_page_load(self, fn, inputs, outputs) -> None:
        """Run `fn` when a page opens, so a tab shows its default view without a click."""
        if self.blocks is not None:
            self.blocks.load(fn, inputs, outputs, api_visibility="private")
