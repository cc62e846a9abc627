"""Serving the app and driving Chromium in tests (imported by the app and browser test modules)."""

import contextlib
import os
import socket

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_tiny_app(runs_dir, **module_patches):
    """The whole app served in-process with tiny untrained registry models and an empty runs folder.

    `module_patches` maps "module.ATTRIBUTE" (under `app`) to a value, e.g. {"train_tab.UI_DATA": ...}.
    Yields the local URL; closes the server and undoes every patch afterwards.
    """
    import importlib

    from app import build_demo, launch_kwargs, models

    patch = pytest.MonkeyPatch()
    patch.setenv("HINET_RUNS_DIR", str(runs_dir))
    patch.setattr(models, "REGISTRY_PREFIX", "tiny_")
    patch.setattr(models, "DEFAULT_UNTRAINED", "tiny_half_instance")
    for target, value in module_patches.items():
        module, attribute = target.split(".")
        patch.setattr(importlib.import_module(f"app.{module}"), attribute, value)  # imported even when run alone
    demo = build_demo()
    try:
        _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(),
                                quiet=True, **launch_kwargs())
        yield url
    finally:
        demo.close()
        patch.undo()


def launch_chromium(playwright):
    """Debian's Chromium (never `playwright install`); tests skip before this when it is missing."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def require_chromium():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install it with `apt-get update && apt-get install -y chromium`")
