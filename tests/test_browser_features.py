"""Real-browser check of the feature-maps and learn tabs: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import pytest

from app_harness import free_port, launch_chromium, require_chromium

pytestmark = pytest.mark.browser

# A plotly figure that rendered has an svg with its axes/bars/cubes in it (or a WebGL canvas for 3D).
PLOT_CONTENT = """el => {
    const svgParts = el.querySelectorAll('svg.main-svg *').length;
    const canvases = Array.from(el.querySelectorAll('canvas')).filter(c => c.width > 0 && c.height > 0).length;
    return svgParts + canvases;
}"""


@pytest.fixture(scope="module")
def app_url():
    require_chromium()
    import gradio as gr

    from app import features_tab, learn_tab
    from app.context import AppContext

    with gr.Blocks() as demo:
        with gr.Tabs() as tabs:
            ctx = AppContext(tabs=tabs, blocks=demo)
            with gr.Tab("Inside HIN blocks", id="features"):
                features_tab.build_tab(ctx)
            with gr.Tab("Learn normalization", id="learn"):
                learn_tab.build_tab(ctx)
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
    try:
        yield url
    finally:
        demo.close()


def _plot_has_content(page, elem_id: str, timeout_ms: int = 60_000) -> int:
    plot = page.locator(f"#{elem_id} .js-plotly-plot").first
    plot.wait_for(state="attached", timeout=timeout_ms)
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('#{elem_id} .js-plotly-plot'); "
        f"return el && ({PLOT_CONTENT})(el) > 5; }}",
        timeout=timeout_ms,
    )
    return plot.evaluate(PLOT_CONTENT)


def test_both_tabs_render_their_plots(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(app_url + "?view=norm%3Dbn%26exp%3Dbatch%26bs%3D3")
            # Feature maps tab (first tab): the page load renders the default block.
            for elem_id in ("features-architecture", "features-statistics", "features-histogram"):
                assert _plot_has_content(page, elem_id) > 5, elem_id
            overview = page.locator("#features-overview img").first
            expect(overview).to_be_visible(timeout=30_000)
            assert overview.evaluate("img => img.naturalWidth") > 100
            page.screenshot(path=str(tmp_path / "features_tab.png"), full_page=True)

            page.get_by_role("tab", name="Learn normalization").click()
            assert _plot_has_content(page, "learn-figure") > 5
            assert _plot_has_content(page, "learn-cube") > 0  # WebGL canvas or its svg frame
            # ?view= in the URL set the tab's state at load
            expect(page.locator("#learn-share textarea, #learn-share input").first).to_have_value(
                "norm=bn&ch=0&exp=batch&bs=3&tile=64&affine=1&ratio=0.5", timeout=30_000
            )
            page.screenshot(path=str(tmp_path / "learn_tab.png"), full_page=True)
        finally:
            browser.close()
