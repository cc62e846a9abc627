"""One real-browser pass over the restore tab: Debian's Chromium driven by Playwright."""

from __future__ import annotations

import pytest

from app_harness import launch_chromium, require_chromium, serve_tiny_app, tiny_store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    with serve_tiny_app(tiny_store(tmp_path_factory.mktemp("runs"))) as url:
        yield url


def test_pick_example_restore_and_see_slider_and_metrics(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.goto(app_url)
            page.get_by_label("astronaut").check()
            # The server reads the example and shows it as the input preview.
            expect(page.locator("#restore-preview img").first).to_be_visible(timeout=30_000)
            page.get_by_role("button", name="Restore").click()
            metrics = page.locator("#restore-metrics")
            expect(metrics.get_by_text("input (no restoration)").filter(visible=True).first).to_be_visible(
                timeout=60_000
            )
            expect(metrics.get_by_text("PSNR (dB)").first).to_be_visible()
            expect(page.locator("#restore-slider img")).to_have_count(2, timeout=10_000)
            # Clicking near the overview's top-left corner moves the synced zoom there.
            page.locator("#restore-overview img").first.click(position={"x": 5, "y": 5})
            centre_x = page.get_by_label("number input for Zoom centre x")
            expect(centre_x).not_to_have_value("0.5", timeout=15_000)
            assert float(centre_x.input_value()) < 0.2
            page.get_by_label("Show difference maps |x − GT|").check()
            expect(page.get_by_text("Difference maps: |output − GT|")).to_be_visible(timeout=15_000)
            page.screenshot(path=str(tmp_path / "restore_tab.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "restore_tab.png").stat().st_size > 10_000
