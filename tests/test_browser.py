"""Real-browser passes over the whole app as `python app.py` serves it (shipped models): the restore tab's
first view, a restore, and one screenshot per tab (`HINET_SCREENSHOTS=1` writes them to docs/screenshots/
for the README; otherwise they go to the test's tmp folder). Debian's Chromium driven by Playwright."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from app_harness import launch_chromium, require_chromium, screenshot_path, serve_tiny_app, shipped_store

pytestmark = pytest.mark.browser

FIRST_VIEW_SECONDS = 10  # the bar: a finished comparison this long after the page starts loading, no click
SCREEN = {"width": 1366, "height": 768}  # a common laptop screen: the result must be above its fold
SCREENSHOT_MAX_HEIGHT = 1800  # px of a long tab kept in its screenshot

# A plotly figure that rendered has an svg with its axes/bars in it (or a WebGL canvas for 3D).
PLOT_CONTENT = """el => {
    const svgParts = el.querySelectorAll('svg.main-svg *').length;
    const canvases = Array.from(el.querySelectorAll('canvas')).filter(c => c.width > 0 && c.height > 0).length;
    return svgParts + canvases;
}"""
IMAGES_LOADED = """sel => {
    const images = Array.from(document.querySelectorAll(sel));
    return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
}"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    # Served from an empty folder, so the runs folder reads `runs` as under `python app.py` (screenshots).
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path_factory.mktemp("cwd"))
        with serve_tiny_app(shipped_store(Path("runs"))) as url:
            yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


def _wait_for_plot(page, elem_id: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        f"() => {{ const el = document.querySelector('#{elem_id} .js-plotly-plot'); "
        f"return el && ({PLOT_CONTENT})(el) > 5; }}",
        timeout=timeout_ms,
    )


def _screenshot(page, path) -> None:
    """The page from its top, at most SCREENSHOT_MAX_HEIGHT px of it."""
    page.evaluate("() => window.scrollTo(0, 0)")
    height = min(page.evaluate("() => document.documentElement.scrollHeight"), SCREENSHOT_MAX_HEIGHT)
    page.screenshot(path=str(path), full_page=True, clip={"x": 0, "y": 0, "width": SCREEN["width"], "height": height})


def test_the_restore_tab_opens_on_a_finished_comparison_above_the_fold(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    from app.restore_logic import first_view_variants

    _, partner = first_view_variants(shipped_store(Path("runs")), "denoise")  # the default and one other norm
    page = browser.new_page(viewport=SCREEN)
    started = time.monotonic()
    page.goto(app_url)

    def deadline_ms() -> int:  # what is left of the first view's time
        return max(1, int((FIRST_VIEW_SECONDS - (time.monotonic() - started)) * 1000))

    # Before/after: both slider pictures decoded, without any click.
    expect(page.locator("#restore-slider img")).to_have_count(2, timeout=deadline_ms())
    page.wait_for_function(IMAGES_LOADED, arg="#restore-slider img", timeout=deadline_ms())
    # A filled metrics table: the input baseline and two restorations, with PSNR values.
    metrics = page.locator("#restore-metrics")
    expect(metrics.get_by_text("input (no restoration)").filter(visible=True).first).to_be_visible(
        timeout=deadline_ms()
    )
    expect(metrics.get_by_text("PSNR (dB)").first).to_be_visible(timeout=deadline_ms())
    expect(metrics.get_by_text(partner.removeprefix("results/")).filter(visible=True).first).to_be_visible(
        timeout=deadline_ms()
    )
    seconds = time.monotonic() - started
    assert seconds < FIRST_VIEW_SECONDS, f"the first view took {seconds:.1f} s"
    # Above the fold: the slider and the whole metrics table are on the first screen.
    for elem_id in ("restore-slider", "restore-metrics"):
        box = page.locator(f"#{elem_id}").bounding_box()
        assert box is not None and box["y"] + box["height"] <= SCREEN["height"], (elem_id, box)
    # The rest of the comparison is filled too: the zoom grid, the controls set to what is shown, the CSV.
    page.wait_for_function(IMAGES_LOADED, arg="#restore-grid img", timeout=15_000)
    expect(page.get_by_role("radio", name="astronaut")).to_be_checked()
    page.wait_for_timeout(500)
    path = screenshot_path(tmp_path, "restore")
    page.screenshot(path=str(path))  # what the first screen shows
    assert path.stat().st_size > 10_000
    page.get_by_text("The metrics as CSV, and how to compute them again").click()
    expect(page.locator("#restore-metrics-csv").get_by_text(".csv").first).to_be_visible(timeout=15_000)
    expect(page.get_by_text('api_name="/restore"')).to_be_visible()
    page.close()


def test_pick_another_example_restore_and_use_the_zoom(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.goto(app_url)
    expect(page.get_by_role("radio", name="astronaut")).to_be_checked(timeout=30_000)  # the first view has arrived
    page.get_by_role("radio", name="coffee").check()
    # The server reads the example and shows it as the input preview.
    expect(page.locator("#restore-preview img").first).to_be_visible(timeout=30_000)
    first_overview = page.locator("#restore-overview img").first.get_attribute("src")
    page.get_by_role("button", name="Restore").click()
    downloads = page.locator("#restore-downloads")
    expect(downloads.get_by_role("cell", name="coffee_denoise_input.png")).to_be_visible(timeout=60_000)
    metrics = page.locator("#restore-metrics")
    expect(metrics.get_by_text("input (no restoration)").filter(visible=True).first).to_be_visible()
    expect(page.locator("#restore-slider img")).to_have_count(2, timeout=10_000)
    # Clicking near the overview's top-left corner moves the synced zoom there (once the new one is shown).
    expect(page.locator("#restore-overview img").first).not_to_have_attribute("src", first_overview)
    page.wait_for_function(IMAGES_LOADED, arg="#restore-overview img", timeout=15_000)
    page.locator("#restore-overview img").first.click(position={"x": 5, "y": 5})
    centre_x = page.get_by_label("number input for Zoom centre x")
    expect(centre_x).not_to_have_value("0.5", timeout=15_000)
    assert float(centre_x.input_value()) < 0.2
    page.get_by_label("Show difference maps |x − GT|").check()
    expect(page.get_by_text("Difference maps: |output − GT|")).to_be_visible(timeout=15_000)
    page.screenshot(path=str(tmp_path / "restore_tab.png"), full_page=True)
    page.close()
    assert (tmp_path / "restore_tab.png").stat().st_size > 10_000


def test_every_other_tab_renders_and_is_screenshotted(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    from app import TITLES

    page = browser.new_page(viewport=SCREEN)
    page.goto(app_url)

    def csv_offered(elem_id: str) -> None:  # a table's CSV file, written by the event that filled it
        expect(page.locator(f"#{elem_id}").get_by_text(".csv").first).to_be_visible(timeout=60_000)

    ready = {
        "features": lambda: (
            _wait_for_plot(page, "features-statistics"),
            page.wait_for_function(IMAGES_LOADED, arg="#features-overview img", timeout=60_000),
            csv_offered("features-statistics-csv"),
        ),
        "learn": lambda: _wait_for_plot(page, "learn-figure"),
        "ablation": lambda: (_wait_for_plot(page, "ablation-psnr"), csv_offered("ablation-verdicts-csv")),
        "train": lambda: expect(page.get_by_role("button", name="Start training")).to_be_visible(),
    }
    for tab_id, wait in ready.items():
        page.get_by_role("tab", name=TITLES[tab_id]).click()
        wait()
        page.wait_for_timeout(500)  # let plotly finish its transitions
        path = screenshot_path(tmp_path, tab_id)
        _screenshot(page, path)
        assert path.stat().st_size > 10_000, tab_id
    page.close()


def test_a_shipped_variant_opens_from_the_ablation_tab_in_the_restore_tab(app_url, browser):
    """A fresh clone's shipped ablation weights (results/runs/*/weights_fp16.safetensors): the ablation tab
    offers one, its "Open in Restore" button switches to the restore tab with that run among the variants."""
    from playwright.sync_api import expect

    from app import TITLES
    from hinet.runs import RESULTS_DIR, SHIPPED_WEIGHTS_FILE, results_runs_dir

    page = browser.new_page(viewport=SCREEN)
    page.goto(app_url)
    page.get_by_role("tab", name=TITLES["ablation"]).click()
    _wait_for_plot(page, "ablation-psnr")
    chosen = page.get_by_label("Open a run's weights in the restore tab").input_value()
    run = chosen.rsplit("(", 1)[-1].rstrip(")")  # labels read "<variant> · seed <n> (<run>)"
    assert (results_runs_dir(RESULTS_DIR) / run / SHIPPED_WEIGHTS_FILE).is_file()
    page.get_by_role("button", name="Open in Restore").first.click()
    expect(page.get_by_role("tab", name=TITLES["restore"])).to_have_attribute("aria-selected", "true", timeout=30_000)
    expect(page.locator("#restore-variants")).to_contain_text(run, timeout=30_000)
    page.close()
