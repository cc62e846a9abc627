"""End-to-end timings of the restore tab, measured through gradio_client against the app served in-process.

    python scripts/bench_app.py [--repeats 3] [--skip-large] [--skip-browser]

Measures (upload, queue, model, metrics, PNG encoding of every output, download files: all included):
0. the restore tab's first paint in Chromium: page load until the example comparison (before/after slider
   and metrics table) is visible, for the first page after start (it computes the first view) and for a
   later page (the cached first view); target < 5 s. Skipped without Chromium (`--chromium`);
1. a 512 x 512 restore with the default variant (target < 1 s);
2. a 4-variant compare on the same image (target < 3 s);
3. a 12-megapixel (4000 x 3000) tiled restore (tile 512, overlap 32): must complete; peak memory printed.
Prints each median next to its target and the ratio measured / target. The machine is shared: run it
when `uptime` shows a quiet box and compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

TARGET_SINGLE_S = 1.0
TARGET_COMPARE_S = 3.0
TARGET_FIRST_PAINT_S = 5.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
FIRST_PAINT_VIEWPORT = {"width": 1366, "height": 768}
COMPARE_VARIANTS = ["registry/small_hin", "registry/small_none", "registry/small_batch", "registry/small_layer"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def _write_images(folder: Path) -> tuple[Path, Path]:
    import numpy as np
    import skimage.data
    from PIL import Image

    from hinet.image import save_image

    astronaut = skimage.data.astronaut()  # 512 x 512 RGB
    small = save_image(folder / "astronaut_512.png", astronaut)
    # A natural-looking 12 MP picture: the astronaut enlarged (compresses like a photo, unlike noise).
    large = np.asarray(Image.fromarray(astronaut).resize((4000, 3000), Image.Resampling.BICUBIC))
    return small, save_image(folder / "astronaut_12mp.png", large)


def first_paint_seconds(url: str, chromium: str, pages: int = 2) -> list[float]:
    """Seconds from navigation start until the restore tab shows its example comparison (both slider
    images and a metrics row visible), for `pages` fresh pages one after another."""
    from playwright.sync_api import expect, sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for _ in range(pages):
                page = browser.new_page(viewport=FIRST_PAINT_VIEWPORT)
                t0 = time.perf_counter()
                page.goto(url)
                expect(page.locator("#restore-slider img")).to_have_count(2, timeout=60_000)
                metrics = page.locator("#restore-metrics").get_by_text("input (no restoration)")
                expect(metrics.filter(visible=True).first).to_be_visible(timeout=60_000)
                page.wait_for_function(
                    "() => Array.from(document.querySelectorAll('#restore-slider img'))"
                    ".every(img => img.complete && img.naturalWidth > 0)",
                    timeout=60_000,
                )
                times.append(time.perf_counter() - t0)
                page.close()
        finally:
            browser.close()
    return times


def _print_first_paint(url: str, chromium: str, repeats: int) -> None:
    if not os.path.exists(chromium):
        print(f"restore tab first paint: skipped, {chromium} is missing (--chromium)")
        return
    cold, *warm = first_paint_seconds(url, chromium, pages=1 + max(1, repeats))
    for label, seconds in (("first page after start", cold), ("later pages, median", statistics.median(warm))):
        print(
            f"{'restore tab first paint, ' + label:52s} {seconds:6.3f} s  target < {TARGET_FIRST_PAINT_S:.1f} s  "
            f"ratio {seconds / TARGET_FIRST_PAINT_S:5.2f}"
        )


def _timed(client, repeats: int, **kwargs) -> tuple[list[float], object]:
    times, output = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        output = client.predict(**kwargs, api_name="/restore")
        times.append(time.perf_counter() - t0)
    return times, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="skip the 12-megapixel tiled restore")
    parser.add_argument("--skip-browser", action="store_true", help="skip the first-paint timing in Chromium")
    parser.add_argument("--chromium", default=CHROMIUM, help=f"the Chromium binary (default {CHROMIUM})")
    args = parser.parse_args()

    import torch
    from gradio_client import Client, handle_file

    from app import build_demo, launch_kwargs
    from app.models import ModelStore

    print(f"load: {os.getloadavg()}, torch threads: {torch.get_num_threads()}")
    store = ModelStore()
    default_id = store.default_entry(store.list_entries("denoise"), "denoise").id
    print(f"default denoise variant: {default_id}")
    demo = build_demo(store)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=_free_port(), quiet=True, **launch_kwargs()
    )
    rows = []
    try:
        # First, while nothing is loaded yet: the first page computes the first view, later pages reuse it.
        if not args.skip_browser:
            _print_first_paint(url, args.chromium, args.repeats)
        # The app is served over plain http on loopback: no certificate to verify. gradio_client's default
        # ssl_verify=True builds a fresh SSL context (the CA bundle) for each of its one-shot requests,
        # a cost of the client, not of the app, that a browser does not pay per file.
        client = Client(url, verbose=False, ssl_verify=False)
        with tempfile.TemporaryDirectory() as tmp:
            small, large = _write_images(Path(tmp))
            base = dict(example=None, ground_truth=None, task="denoise", degrade_first=False)

            # Warm-up: loads the models once (the cache keeps them), as a running server would have.
            client.predict(image=handle_file(str(small)), variants=COMPARE_VARIANTS, **base, api_name="/restore")
            client.predict(image=handle_file(str(small)), variants=[default_id], **base, api_name="/restore")

            # gradio_client fetches every output file one after another (a browser fetches them in parallel
            # while showing the page): time both the full round trip and the server's answer alone.
            url_client = Client(url, verbose=False, download_files=False, ssl_verify=False)
            for name, caller in (("with file downloads", client), ("server answer only", url_client)):
                times, output = _timed(
                    caller, args.repeats, image=handle_file(str(small)), variants=[default_id], **base
                )
                rows.append((f"512x512 restore, default ({name})", times, TARGET_SINGLE_S, [output[3]["data"][0][-1]]))
                times, output = _timed(
                    caller, args.repeats, image=handle_file(str(small)), variants=COMPARE_VARIANTS, **base
                )
                rows.append(
                    (
                        f"512x512 compare, 4 variants ({name})",
                        times,
                        TARGET_COMPARE_S,
                        [row[-1] for row in output[3]["data"]],
                    )
                )

            for label, times, target, model_seconds in rows:
                median = statistics.median(times)
                print(
                    f"{label:52s} median {median:6.3f} s  target < {target:.1f} s  ratio {median / target:5.2f}  "
                    f"runs {[round(t, 3) for t in times]}  model s (last run) {model_seconds}"
                )

            if not args.skip_large:
                rss_before = _peak_rss_mb()
                t0 = time.perf_counter()
                output = client.predict(
                    image=handle_file(str(large)),
                    variants=[default_id],
                    tiling="tiles",
                    tile_size=512,
                    overlap=32,
                    **base,
                    api_name="/restore",
                )
                seconds = time.perf_counter() - t0
                print(
                    f"12 MP (4000x3000) tiled restore (tile 512, overlap 32): {seconds:.1f} s end to end, "
                    f"model {output[3]['data'][0][-1]} s; peak RSS of this process {_peak_rss_mb():.0f} MB "
                    f"(before it: {rss_before:.0f} MB)"
                )
                print(output[5].splitlines()[0])
    finally:
        demo.close()
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
