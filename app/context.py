"""Components shared between tabs, filled in as the tabs are built (restore tab first)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

TAB_IDS = ("restore", "features", "learn", "ablation", "train")
# Events that run a model pass concurrency_id=CPU_QUEUE: with the app's default limit of 1 they queue
# behind each other instead of fighting over the CPU cores.
CPU_QUEUE = "cpu"


@dataclass
class AppContext:
    tabs: gr.Tabs  # switch tabs with gr.Tabs(selected=<tab id>)
    blocks: gr.Blocks | None = None  # the app being built: tabs register page-load events on it
    restore_image: gr.Image | None = None  # the restore tab's input image (numpy)
    restore_task: gr.Dropdown | None = None  # the restore tab's task picker
    restore_variants: gr.Dropdown | None = None  # the restore tab's variant picker (multiselect of entry ids)
