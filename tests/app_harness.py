"""Serving the app and driving Chromium in tests (imported by the app and browser test modules)."""

import contextlib
import os
import socket
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
# HINET_SCREENSHOTS=1 writes the browser tests' screenshots into the README's folder; otherwise they go to
# the test's tmp folder, so that an ordinary test run never changes the repository.
SCREENSHOTS_ENV = "HINET_SCREENSHOTS"
README_SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def screenshot_path(tmp_path, tab_id: str) -> Path:
    """Where a tab's screenshot goes: docs/screenshots/<tab>.png with HINET_SCREENSHOTS=1, else tmp_path."""
    folder = README_SCREENSHOTS if os.environ.get(SCREENSHOTS_ENV) == "1" else Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{tab_id}.png"


def shipped_store(runs_dir):
    """The model store `python app.py` uses (shipped results/, small_* registry variants), with an empty
    runs folder of its own instead of the user's."""
    from app.models import ModelStore

    return ModelStore(runs_dir=runs_dir)


def tiny_store(runs_dir):
    """A model store listing the tiny untrained registry variants (default tiny_half_instance), the shipped
    results/ and the runs under `runs_dir`."""
    from app.models import ModelStore

    return ModelStore(runs_dir=runs_dir, registry_prefix="tiny_", default_untrained="tiny_half_instance")


@contextlib.contextmanager
def serve_tiny_app(store, **module_patches):
    """The whole app over `store` (see `tiny_store`) served in-process.

    `module_patches` maps "module.ATTRIBUTE" (under `app`) to a value, e.g. {"train_logic.UI_DATA": ...}.
    Yields the local URL; closes the server and undoes every patch afterwards.
    """
    import importlib

    from app import build_demo, launch_kwargs

    patch = pytest.MonkeyPatch()
    for target, value in module_patches.items():
        module, attribute = target.split(".")
        patch.setattr(importlib.import_module(f"app.{module}"), attribute, value)  # imported even when run alone
    demo = build_demo(store)
    try:
        _, url, _ = demo.launch(
            prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True, **launch_kwargs()
        )
        yield url
    finally:
        demo.close()  # its first-view thread is joined by conftest's autouse fixture
        patch.undo()


def launch_chromium(playwright):
    """Debian's Chromium (never `playwright install`); tests skip before this when it is missing."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def require_chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium`")
