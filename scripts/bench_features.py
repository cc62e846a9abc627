"""Time the feature-maps tab: first capture, then switching block and channel from the session cache.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/bench_features.py [--variant registry/small_hin] [--repeats 3]

Calls the tab's own `render_block` (`app.feature_logic`) (everything a switch computes: figures, picture, table), on a
256 x 256 crop of skimage's astronaut, then the same switches through a served demo of the tab
(`/features_view` via gradio_client: a full round trip, PNG encoding and JSON included).
The target is < 0.5 s per switch.
"""

from __future__ import annotations

import argparse
import statistics
import time

from app import feature_logic, features_tab
from app.architecture import block_layout
from app.feature_views import VIEW_CROP
from app.models import ModelStore
from hinet.data import skimage_images


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="registry/small_hin")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    pixels = skimage_images()["astronaut"][128:384, 128:384].copy()
    store = ModelStore()
    source = feature_logic._source(pixels, "astronaut 256 x 256 crop")
    config = store.find_entry(args.variant).config
    blocks = [b.name for b in block_layout(config)]
    k = features_tab.DEFAULT_K

    store.get_model(args.variant)  # model loading is not part of a switch
    first, result = timed(feature_logic.render_block, store, args.variant, source, VIEW_CROP, blocks[0], k, 0, None)
    cache = result["cache"]
    block_times, channel_times = [], []
    for _ in range(args.repeats):
        for block in blocks:
            seconds, result = timed(
                feature_logic.render_block, store, args.variant, source, VIEW_CROP, block, k, 0, cache
            )
            block_times.append(seconds)
        for channel in range(8):
            seconds, result = timed(
                feature_logic.render_block, store, args.variant, source, VIEW_CROP, blocks[0], k, channel, cache
            )
            channel_times.append(seconds)
    print(f"variant {args.variant}, image 256 x 256, k={k}, {len(blocks)} blocks")
    print(f"first view (forward pass + capture of every block + render): {first:.3f} s")
    report("handler", block_times, channel_times)
    served(store, args.variant, blocks, args.repeats)


def report(where: str, block_times: list[float], channel_times: list[float]) -> None:
    for name, times in (("switch block", block_times), ("switch channel", channel_times)):
        print(
            f"{where}, {name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s over "
            f"{len(times)} switches -> {'OK' if max(times) < 0.5 else 'SLOWER THAN'} the 0.5 s target"
        )


def served(store: ModelStore, variant: str, blocks: list[str], repeats: int) -> None:
    import os
    import tempfile

    import gradio as gr
    from gradio_client import Client, handle_file
    from PIL import Image

    from app.context import AppContext

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    with gr.Blocks() as demo, gr.Tabs() as tabs, gr.Tab("Inside HIN blocks"):
        features_tab.build_tab(AppContext(tabs=tabs, blocks=demo, store=store))
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True)
    try:
        client = Client(url, verbose=False)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "astronaut_256.png")
            crop = (skimage_images()["astronaut"][128:384, 128:384] * 255).round().astype("uint8")
            Image.fromarray(crop).save(path)
            client.predict(handle_file(path), api_name="/features_upload")
        k = features_tab.DEFAULT_K
        first, _ = timed(lambda: client.predict(variant, VIEW_CROP, blocks[0], k, 0, api_name="/features_view"))
        print(f"served, first view: {first:.3f} s")
        block_times, channel_times = [], []
        for _ in range(repeats):
            for block in blocks:
                seconds, _ = timed(lambda: client.predict(variant, VIEW_CROP, block, k, 0, api_name="/features_view"))
                block_times.append(seconds)
            for channel in range(8):
                seconds, _ = timed(
                    lambda: client.predict(variant, VIEW_CROP, blocks[0], k, channel, api_name="/features_view")
                )
                channel_times.append(seconds)
        report("served", block_times, channel_times)
    finally:
        demo.close()


if __name__ == "__main__":
    main()
