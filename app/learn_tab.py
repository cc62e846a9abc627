"""Learn normalization tab: what each norm averages over, and live experiments on a real image and model.

Wiring only: the experiments are `app.learn_logic`, the cube and the share string `app.learn_views`, the
guided lesson `app.lesson` (its text is `app/lessons/normalization.yaml`). The state of the tab is a
`LearnState`, shareable as a short string ("norm=hin&exp=batch&bs=4") or as the page URL's `?view=` query;
each lesson step sets it through such a string.
"""

from __future__ import annotations

import gradio as gr

from app import TITLES, learn_views as views
from app.context import TAB_IDS, AppContext
from app.errors import user_errors
from app.learn_logic import GRID, render, state_from_controls
from app.lesson import load_lesson, step_markdown
from hinet.errors import ConfigError

# ----------------------------------------------------------------------------------------------------
# The tab


def build_tab(ctx: AppContext) -> None:
    store = ctx.store
    default = views.LearnState()
    gr.Markdown("What does each normalization average over, and what does that do to a real image's features?")
    lesson = load_lesson(TAB_IDS)
    with gr.Accordion("Guided lesson", open=True, elem_id="learn-lesson"):
        lesson_step = gr.State(0)  # 0: the intro, 1..N: the lesson's steps
        indicator_text, body_text = step_markdown(lesson, 0, TITLES)
        lesson_indicator = gr.Markdown(indicator_text, elem_id="lesson-indicator")
        lesson_body = gr.Markdown(body_text, elem_id="lesson-body")
        with gr.Row():
            lesson_back = gr.Button("← Back", interactive=False, elem_id="lesson-back", scale=0)
            lesson_next = gr.Button("Next →", variant="primary", elem_id="lesson-next", scale=0)
            lesson_tab = gr.Button(visible=False, elem_id="lesson-tab", scale=0, min_width=380)
    with gr.Row():
        with gr.Column(scale=1):
            norm = gr.Radio(
                [(views.NORM_TITLES[k], k) for k in views.NORM_KEYS], value=default.norm, label="Normalization"
            )
            cube_channel = gr.Slider(
                0,
                views.CUBE_C - 1,
                value=default.ch,
                step=1,
                label="Channel whose statistics are highlighted (sample 0)",
            )
            cube_caption = gr.Markdown(views.NORM_CAPTIONS[default.norm])
        with gr.Column(scale=2):
            cube = gr.Plot(views.cube_figure(default.norm), label="The (N, C, H·W) cube", elem_id="learn-cube")
    gr.Markdown("### Live experiments")
    experiment = gr.Radio(
        [(label, key) for key, label in views.EXPERIMENTS.items()], value=default.exp, label="Experiment"
    )
    with gr.Row():
        batch_size = gr.Slider(1, GRID * GRID, value=default.bs, step=1, label="Batch size (batch experiment)")
        tile = gr.Slider(16, 192, value=default.tile, step=16, label="Tile size (tile experiment)")
        affine = gr.Checkbox(value=default.affine, label="Affine γ/β on (affine experiment)")
        ratio = gr.Slider(0, 1, value=default.ratio, step=0.125, label="Normalized ratio (ratio experiment)")
    caption = gr.Markdown()
    figure = gr.Plot(label="Experiment", elem_id="learn-figure")
    picture = gr.Image(
        label="Whole | tiled | local statistics | |tiled − whole| | |local − whole|",
        format="png",
        type="numpy",
        interactive=False,
        visible=False,
    )
    with gr.Row():
        share = gr.Textbox(
            label="Share this view (paste it below, or add ?view=<string> to the page URL)",
            value=views.format_share(default),
            interactive=False,
            buttons=["copy"],
            elem_id="learn-share",
        )
        load_text = gr.Textbox(label="Load a shared view", placeholder="norm=hin&exp=batch&bs=4")
        load_button = gr.Button("Load")

    controls = [norm, cube_channel, experiment, batch_size, tile, affine, ratio]
    outputs = [cube, cube_caption, figure, picture, caption, share]

    def outputs_for(state: views.LearnState):
        r = render(store, state)
        return (
            r["cube"],
            r["cube_caption"],
            gr.Plot(r["figure"], visible=r["figure"] is not None),
            gr.Image(r["picture"], visible=r["picture"] is not None),
            r["caption"],
            r["share"],
        )

    @user_errors
    def show(*values):
        return outputs_for(state_from_controls(*values))

    def control_values(state: views.LearnState):
        return state.norm, state.ch, state.exp, state.bs, state.tile, state.affine, state.ratio

    @user_errors
    def load(text):
        state = views.parse_share(text)
        return (*control_values(state), *outputs_for(state))

    @user_errors
    def load_from_url(request: gr.Request):
        query = dict(request.query_params) if request is not None else {}
        text = query.get("view") or "&".join(f"{k}={v}" for k, v in query.items() if k != "__theme")
        try:
            state = views.parse_share(text) if text else views.LearnState()
        except ConfigError as error:
            gr.Warning(f"ignored the page's ?view= setting: {error}")
            state = views.LearnState()
        return (*control_values(state), *outputs_for(state))

    lesson_outputs = [lesson_step, lesson_indicator, lesson_body, lesson_back, lesson_next, lesson_tab]

    @user_errors
    def lesson_move(step: int, delta: int):
        """Go `delta` steps; every step sets the tab's controls to its view (the intro leaves them)."""
        index = min(max(int(step or 0) + delta, 0), len(lesson.steps))
        indicator, body = step_markdown(lesson, index, TITLES)
        chosen = lesson.steps[index - 1] if index else None
        panel = (
            index,
            indicator,
            body,
            gr.Button(interactive=index > 0),
            gr.Button(interactive=index < len(lesson.steps)),
            gr.Button(f"See it on a trained model: {TITLES[chosen.tab]}", visible=True)
            if chosen
            else gr.Button(visible=False),
        )
        if chosen is None:
            return (*panel, *[gr.skip()] * len(controls + outputs))
        return (*panel, *control_values(chosen.state), *outputs_for(chosen.state))

    @user_errors
    def lesson_open_tab(step: int):
        return gr.Tabs(selected=lesson.steps[int(step) - 1].tab) if step else gr.skip()

    lesson_event = dict(inputs=lesson_step, outputs=lesson_outputs + controls + outputs, api_visibility="private")
    lesson_back.click(lambda step: lesson_move(step, -1), **lesson_event)
    lesson_next.click(lambda step: lesson_move(step, 1), **lesson_event)
    lesson_tab.click(lesson_open_tab, lesson_step, ctx.tabs, api_visibility="private")

    show_event = dict(fn=show, inputs=controls, outputs=outputs)
    norm.input(**show_event, api_name="learn_view")
    for control in (experiment, affine):
        control.input(**show_event, api_visibility="private")
    for control in (cube_channel, batch_size, tile, ratio):
        control.release(**show_event, api_visibility="private")
    load_button.click(load, load_text, controls + outputs, api_name="learn_load")
    load_text.submit(load, load_text, controls + outputs, api_visibility="private")
    ctx.on_page_load(load_from_url, None, controls + outputs)
