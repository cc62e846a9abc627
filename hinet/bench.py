"""CPU benchmarks: inference paths, training-step throughput, and a tiled 12-megapixel restore.

    python -m hinet.bench                                  # forward: plain fp32 eager vs the other paths
    python -m hinet.bench --variants small_hin --sizes 256 512 --repeats 5
    python -m hinet.bench --train                          # training steps/s: fp32, bf16 autocast, channels_last
    python -m hinet.bench --no-forward --tiled-12mp --tiled-variant small_hin --tile 512
    python -m hinet.bench --no-forward --tiled-12mp --tiled-variant hinet_gopro --one-tile-only
    python -m hinet.bench --no-forward --local-stats --repeats 5   # stats protocols: whole vs tiled vs local

Every forward path runs in the same process, interleaved round by round (this machine is shared and
noisy, so only ratios measured side by side mean anything). Quality: each variant restores the same
noisy astronaut crop (skimage.data, sigma 25) on every path; the table shows the PSNR of each path's
output against the clean crop minus that of plain fp32 (project protocol: RGB, uint8-rounded), the PSNR
between the two outputs, and their max abs difference. Registry models are untrained (random weights):
pass --checkpoint to measure a trained model too.

`--local-stats` times the test-time statistics protocols (`hinet.inference.STATS_PROTOCOLS`) of trained
checkpoints (default: the shipped denoisers) on a 512 x 512 noisy crop through `restore`, interleaved,
and prints local/whole: TLC's windowed norms must stay within 1.5x the one-pass time.

The tables go to stdout; `-v`/`-q` set how much of the library's logging reaches stderr (`hinet.logs`).
Exit status 2 on a user error (e.g. an unreadable --checkpoint), with one line on stderr.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import numpy as np
import skimage.data
import torch

from hinet.checkpoint import load_checkpoint
from hinet.data import degrade
from hinet.errors import HINetError
from hinet.image import image_to_tensor, load_image, pad_to_multiple, tensor_to_image
from hinet.inference import (
    FAST_PATH,
    FAST_PATH_BF16,
    FAST_PATH_FP32,
    PLAIN_PATH,
    STATS_PROTOCOLS,
    ForwardPath,
    describe_stats,
    eval_mode,
    min_input_size,
    restore,
    run_model,
    training_patch,
)
from hinet.local_stats import uses_input_statistics
from hinet.logs import add_verbosity_flags, configure_logging, verbosity
from hinet.losses import L1Loss
from hinet.metrics import Protocol, psnr
from hinet.model import HINet
from hinet.registry import create_model

PATHS = [
    PLAIN_PATH,
    ForwardPath("inference_mode fp32"),
    FAST_PATH_FP32,  # + channels_last
    ForwardPath("inference_mode + bf16 autocast", bf16_autocast=True),
    FAST_PATH_BF16,  # + channels_last
]
DEFAULT_VARIANTS = ["small_hin", "hinet_sidd_0.5x", "hinet_gopro"]
WF64_MAX_DEFAULT_SIZE = 256  # 512x512 on the 88 M-parameter models takes ~8 s per forward: only on request


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # ru_maxrss is KiB on Linux


def test_crop(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) size x size crops of skimage's astronaut, tiled by reflection past 512."""
    clean = load_image(skimage.data.astronaut()).pixels
    if size > min(clean.shape[:2]):
        clean, _ = pad_to_multiple(clean, 1, min_size=size)
    top = (clean.shape[0] - size) // 2
    left = (clean.shape[1] - size) // 2
    clean = np.ascontiguousarray(clean[top : top + size, left : left + size])
    noisy = degrade(clean, "denoise", np.random.default_rng(seed), sigma=25)
    return clean, noisy


def _quality(outputs: dict[str, torch.Tensor], clean: np.ndarray) -> dict[str, dict[str, float]]:
    reference = outputs[PLAIN_PATH.name]
    reference_image = tensor_to_image(reference)
    base = psnr(reference_image, clean)
    unrounded = Protocol(round_to_uint8=False)  # fp32-vs-fast differences are far below one uint8 step
    rows = {}
    for name, out in outputs.items():
        image = tensor_to_image(out)
        vs_clean = psnr(image, clean)
        rows[name] = {
            "psnr_vs_clean": vs_clean,
            "delta_db": vs_clean - base,
            "psnr_vs_fp32": psnr(image, reference_image, unrounded),
            "max_abs_diff": float((out - reference).abs().max()),
        }
    return rows


def bench_forward(model: HINet, label: str, size: int, repeats: int) -> None:
    clean, noisy = test_crop(size)
    x = image_to_tensor(noisy)
    with eval_mode(model):
        outputs = {path.name: run_model(model, x, path) for path in PATHS}  # also the warm-up
        times: dict[str, list[float]] = {path.name: [] for path in PATHS}
        for _ in range(repeats):
            for path in PATHS:
                start = time.perf_counter()
                run_model(model, x, path)
                times[path.name].append(time.perf_counter() - start)
    quality = _quality(outputs, clean)
    plain = statistics.median(times[PLAIN_PATH.name])
    print(f"\n{label} @ {size}x{size}  (median of {repeats}, noisy input PSNR {_input_psnr(noisy, clean):.2f} dB)")
    print(
        f"  {'path':34s} {'time s':>8s} {'speed-up':>8s} {'PSNR dB':>8s} {'delta dB':>9s} {'vs fp32 dB':>10s} {'max|diff|':>10s}"
    )
    for path in PATHS:
        t = statistics.median(times[path.name])
        q = quality[path.name]
        mark = " *" if path == FAST_PATH else ""
        print(
            f"  {path.name + mark:34s} {t:8.3f} {plain / t:7.2f}x {q['psnr_vs_clean']:8.2f} {q['delta_db']:+9.4f} "
            f"{q['psnr_vs_fp32']:10.1f} {q['max_abs_diff']:10.2e}"
        )
    sys.stdout.flush()


def _input_psnr(noisy: np.ndarray, clean: np.ndarray) -> float:
    return psnr(noisy, clean)


def bench_train(variants: list[str], steps: int, patch: int = 64, batch: int = 8) -> None:
    modes = {
        "fp32": dict(bf16=False, channels_last=False),
        "bf16 autocast": dict(bf16=True, channels_last=False),
        "fp32 channels_last": dict(bf16=False, channels_last=True),
        "bf16 channels_last": dict(bf16=True, channels_last=True),
    }
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(batch, 3, patch, patch, generator=generator)
    noisy = (target + 0.1 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    loss_fn = L1Loss()
    print(f"\nTraining step: patch {patch}, batch {batch}, L1 on both outputs, Adam; median of {steps} steps")
    for variant in variants:
        states = {}
        for mode, options in modes.items():
            torch.manual_seed(0)
            model = create_model(variant).train()
            if options["channels_last"]:
                model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
            states[mode] = (model, torch.optim.Adam(model.parameters(), lr=1e-4), options)
        times: dict[str, list[float]] = {mode: [] for mode in modes}

        def step(mode: str) -> float:
            model, optimizer, options = states[mode]  # noqa: B023  step() only runs within this iteration
            x = noisy.contiguous(memory_format=torch.channels_last) if options["channels_last"] else noisy
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=options["bf16"]):
                outputs = model(x)
            loss = loss_fn([o.float() for o in outputs], target)  # loss in fp32
            loss.backward()
            optimizer.step()
            return time.perf_counter() - start

        for mode in modes:
            step(mode)  # warm-up
        for _ in range(steps):
            for mode in modes:
                times[mode].append(step(mode))
        base = statistics.median(times["fp32"])
        for mode in modes:
            t = statistics.median(times[mode])
            print(f"  {variant:20s} {mode:20s} {t:7.3f} s/step {batch * patch * patch / t:10.0f} px/s {base / t:5.2f}x")
        sys.stdout.flush()


def bench_tiled(variant: str, tile: int, overlap: int, full: bool, height: int = 3000, width: int = 4000) -> None:
    """Peak memory of one tile's forward, then (if `full`) of the whole tiled 12 MP restore.

    ru_maxrss only grows, so the one-tile figure is measured first; the full restore adds the
    full-size input/output/weight accumulators, which do not depend on the model.
    """
    torch.manual_seed(0)
    model = create_model(variant)
    print(f"\nTiled restore, {variant}, tile {tile}, overlap {overlap}, fast path '{FAST_PATH.name}'")
    print(f"  peak RSS after building the model: {peak_rss_gib():.2f} GiB")
    side = max(tile, min_input_size(model))
    with eval_mode(model):
        start = time.perf_counter()
        run_model(model, image_to_tensor(np.full((side, side, 3), 0.5, dtype=np.float32)), FAST_PATH)
    print(f"  one {side}x{side} tile: {time.perf_counter() - start:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")
    if not full:
        return
    rng = np.random.default_rng(0)
    # Random content: the cost does not depend on it.
    image = np.clip(0.5 + 0.1 * rng.standard_normal((height, width, 3), dtype=np.float32), 0, 1)
    done = []
    start = time.perf_counter()
    out = restore(model, image, tile=tile, overlap=overlap, progress=lambda d, t: done.append((d, t)))
    elapsed = time.perf_counter() - start
    print(
        f"  full {width}x{height} ({width * height / 1e6:.0f} MP): {done[-1][1]} tiles, {elapsed:.1f} s, "
        f"output {out.shape} {out.dtype}, peak RSS {peak_rss_gib():.2f} GiB"
    )


LOCAL_STATS_CHECKPOINTS = ["results/models/denoise.safetensors", "results/models/denoise_bn.safetensors"]  # HIN, BN
LOCAL_STATS_BAR = 1.5  # local may cost at most this many times the one-pass ("whole") time


def bench_local_stats(path: str, size: int, repeats: int) -> float:
    """Time `restore` under each stats protocol on one size x size noisy crop; returns local / whole."""
    model, metadata = load_checkpoint(path)
    patch, assumption = training_patch(metadata)
    clean, noisy = test_crop(size)
    x = image_to_tensor(noisy)
    outputs = {stats: restore(model, x, stats=stats, train_patch=patch) for stats in STATS_PROTOCOLS}  # warm-up
    times: dict[str, list[float]] = {stats: [] for stats in STATS_PROTOCOLS}
    for _ in range(repeats):
        for stats in STATS_PROTOCOLS:
            start = time.perf_counter()
            restore(model, x, stats=stats, train_patch=patch)
            times[stats].append(time.perf_counter() - start)
    whole = statistics.median(times["whole"])
    print(
        f"\n{path} ({model.config.describe()}) @ {size}x{size}, median of {repeats}, fast path '{FAST_PATH.name}', "
        f"noisy input PSNR {_input_psnr(noisy, clean):.2f} dB"
    )
    if assumption:
        print(f"  note: {assumption}")
    if not uses_input_statistics(model):
        print(
            f"  note: no norm of this model computes statistics from its input (norm {model.config.norm}): "
            "local runs the same computation as whole"
        )
    for stats in STATS_PROTOCOLS:
        t = statistics.median(times[stats])
        quality = psnr(tensor_to_image(outputs[stats]), clean)
        print(
            f"  {stats:6s} {t:7.3f} s {t / whole:6.2f}x whole  PSNR {quality:6.2f} dB  ({describe_stats(stats, patch)})"
        )
    ratio = statistics.median(times["local"]) / whole
    verdict = "within" if ratio <= LOCAL_STATS_BAR else "OVER"
    print(f"  local / whole = {ratio:.2f} ({verdict} the {LOCAL_STATS_BAR:g}x bar)")
    sys.stdout.flush()
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wf64-512", action="store_true", help="also run the wf64 paper models at sizes > 256")
    parser.add_argument("--checkpoint", nargs="*", default=[], help="also benchmark these trained checkpoints")
    parser.add_argument("--no-forward", action="store_true", help="skip the forward-pass table")
    parser.add_argument("--train", action="store_true", help="training-step throughput (small_hin, tiny_half_instance)")
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--tiled-12mp", action="store_true", help="restore a 4000x3000 image in tiles")
    parser.add_argument(
        "--one-tile-only",
        action="store_true",
        help="with --tiled-12mp: only measure one tile (for models too slow for 12 MP here)",
    )
    parser.add_argument("--tiled-variant", default="hinet_gopro")
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=int, default=32)
    parser.add_argument(
        "--local-stats",
        action="store_true",
        help="time the stats protocols whole / tiled / local of --checkpoint (default: "
        "the shipped denoisers) at --local-size",
    )
    parser.add_argument("--local-size", type=int, default=512)
    add_verbosity_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(verbosity(args))
    try:
        return _run(args)
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; default fast path: '{FAST_PATH.name}' (marked *)"
    )
    if not args.no_forward:
        for variant in args.variants:
            torch.manual_seed(0)
            model = create_model(variant)
            for size in args.sizes:
                if model.config.wf >= 64 and size > WF64_MAX_DEFAULT_SIZE and not args.wf64_512:
                    continue
                bench_forward(model, f"{variant} (untrained)", size, args.repeats)
        for path in args.checkpoint:
            model, metadata = load_checkpoint(path)
            for size in args.sizes:
                bench_forward(model, f"{path} (trained for {metadata.get('task', '?')})", size, args.repeats)
    if args.train:
        bench_train(["small_hin", "tiny_half_instance"], args.train_steps)
    if args.tiled_12mp:
        bench_tiled(args.tiled_variant, args.tile, args.overlap, full=not args.one_tile_only)
    if args.local_stats:
        for path in args.checkpoint or LOCAL_STATS_CHECKPOINTS:
            bench_local_stats(path, args.local_size, args.repeats)
    print(f"\npeak RSS of this process: {peak_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
