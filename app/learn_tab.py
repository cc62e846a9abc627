"""Placeholder for the learn tab; replaced by its real module."""

import gradio as gr


def build_tab(ctx):
    gr.Markdown("This tab is not built yet.")
