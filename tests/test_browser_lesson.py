"""Real-browser passes over the guided lesson (stepped through end to end, every step setting the learn tab's
controls, its link switching tabs) and the "Your checkpoints" sidebar (an upload shows up in the restore
tab's model list): Debian's Chromium driven by Playwright, over the whole app."""

from __future__ import annotations

import pytest

from app_harness import launch_chromium, require_chromium, serve_tiny_app, tiny_store

pytestmark = pytest.mark.browser

SHARE = "#learn-share textarea, #learn-share input"


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    require_chromium()
    sessions = str(tmp_path_factory.mktemp("sessions"))  # the uploads' folders go with the test
    with serve_tiny_app(tiny_store(tmp_path_factory.mktemp("runs")), **{"uploads.UPLOADS_ROOT": sessions}) as url:
        yield url


def test_the_lesson_steps_through_end_to_end_and_each_step_sets_the_controls(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from app import TITLES
    from app.context import TAB_IDS
    from app.learn_views import format_share
    from app.lesson import load_lesson

    lesson = load_lesson(TAB_IDS)
    total = len(lesson.steps)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(app_url)
            page.get_by_role("tab", name=TITLES["learn"]).click()
            indicator, share = page.locator("#lesson-indicator"), page.locator(SHARE).first
            expect(indicator).to_contain_text(lesson.title, timeout=30_000)
            # The page load draws the tab's default view first; a step chosen before it ends would be redrawn.
            page.locator("#learn-figure .js-plotly-plot").first.wait_for(state="attached", timeout=120_000)
            expect(page.locator("#lesson-back")).to_be_disabled()
            seen = []
            for index, step in enumerate(lesson.steps, start=1):
                page.locator("#lesson-next").click()
                expect(indicator).to_contain_text(f"Step {index} of {total}: {step.title}", timeout=60_000)
                expected = format_share(step.state)
                expect(share).to_have_value(expected, timeout=60_000)  # the controls, as the share box reads them
                assert expected not in seen[-1:], f"step {index} left the controls as they were"
                seen.append(expected)
                expect(page.locator("#lesson-body")).to_contain_text(step.question[:40])
                expect(page.locator("#lesson-tab")).to_have_text(f"See it on a trained model: {TITLES[step.tab]}")
                if index == 1:
                    page.screenshot(path=str(tmp_path / "lesson_step_1.png"), full_page=True)
            expect(page.locator("#lesson-next")).to_be_disabled()
            page.locator("#lesson-back").click()
            expect(indicator).to_contain_text(f"Step {total - 1} of {total}", timeout=30_000)
            expect(share).to_have_value(seen[-2], timeout=60_000)
            # The step's link opens the tab that shows it on a trained model.
            target = lesson.steps[total - 2].tab
            page.locator("#lesson-tab").click()
            expect(page.get_by_role("tab", name=TITLES[target])).to_have_attribute(
                "aria-selected", "true", timeout=15_000
            )
        finally:
            browser.close()
    assert len(set(seen)) == total
    assert (tmp_path / "lesson_step_1.png").stat().st_size > 10_000


def test_an_uploaded_checkpoint_appears_in_the_restore_tabs_model_list(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from hinet.checkpoint import save_checkpoint
    from hinet.registry import create_model

    path = save_checkpoint(tmp_path / "browser_upload.safetensors", create_model("tiny_instance"), {"task": "denoise"})
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            page.goto(app_url)
            page.get_by_role("button", name="Toggle Sidebar").click(timeout=30_000)
            page.locator("#uploads-sidebar input[type=file]").set_input_files(str(path))
            page.get_by_role("button", name="Add to my models").click()
            expect(page.locator("#uploads-status")).to_contain_text("Added uploads/browser_upload", timeout=60_000)
            expect(page.locator("#uploads-list")).to_contain_text("uploaded browser_upload")
            page.screenshot(path=str(tmp_path / "uploads_sidebar.png"), full_page=True)
            # The restore tab's variant picker lists it now (its options open on a click).
            page.get_by_label("Variants to compare").first.click()
            expect(page.get_by_role("option", name="uploaded browser_upload", exact=False).first).to_be_visible(
                timeout=15_000
            )
        finally:
            browser.close()
