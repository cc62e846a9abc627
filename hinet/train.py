"""Train a HINet variant: `python -m hinet.train --config configs/X.yaml --set key=value ...`.

`train(cfg)` trains (or resumes) one run into `<out_dir>/<run_name>/`, the run folder described in
`hinet.runs` (config.yaml, model.safetensors, best.safetensors, train_state.safetensors / .json, log.jsonl,
data_sources.json). The parts live in their own modules:

    hinet.config         TrainConfig, its validation, the YAML reader and `--set` overrides
    hinet.runs           run folder files, saving and loading the training state
    hinet.device         device, precision, torchrun process group
    hinet.training_data  batches and validation pairs
    hinet.trainer        the loop (Trainer) and the learning-rate schedule

Resuming is automatic when the run folder holds a state. Batch k is drawn from a numpy generator seeded
by (seed, k, rank), so there is no numpy state to keep: a resumed run sees exactly the batches an unbroken
run would have seen and, on the CPU with deterministic algorithms, ends with bit-identical weights.
A checkpoint's three files are written completely before any of them replaces its predecessor, so a
failed write (full disk) leaves the previous checkpoint whole. A NaN/inf loss or gradient stops the run
before the optimizer step, naming the step and the last good checkpoint; non-finite weights are never saved.
`should_stop()` (the app's cancel button, Ctrl-C / SIGTERM on the command line) saves and returns cleanly.

Under `torchrun` (RANK / WORLD_SIZE set) the model is wrapped in DistributedDataParallel (gloo on the CPU,
nccl on CUDA), every rank draws its own batches (`data.batch` is per process), and only rank 0
validates, logs and writes checkpoints, between barriers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import torch

from hinet.config import TrainConfig, configure_logging, load_config
from hinet.device import Deterministic, init_distributed, resolve_device
from hinet.errors import ConfigError, HINetError, TrainingDiverged
from hinet.runs import has_state, read_state
from hinet.trainer import Trainer

# The names callers of the single-module trainer imported from here; their owners are the modules above.
__all__ = ["train", "main", "TrainConfig", "load_config", "TrainingDiverged", "read_state"]


def train(
    cfg: TrainConfig,
    on_event: Callable[[dict[str, Any]], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Train (or resume) the run described by `cfg`; returns a summary dict.

    `on_event(dict)` receives `{"kind": "step"|"val"|"done", "step", "loss", "lr", "val_psnr",
    "val_ssim", "wall"}` (rank 0 only). `should_stop()` is polled every step; when it returns true a
    checkpoint is saved and the summary (with `"stopped": True`) is returned.

    Process-wide torch settings change for the duration of the call: `torch.set_num_threads(cfg.threads)`
    (when set) and `torch.use_deterministic_algorithms(True, warn_only=True)`. Both are restored when it
    returns or raises, but while it runs they also apply to every other thread of the process, e.g. an
    app's inference requests running beside an in-process training run.
    """
    cfg.validate()
    device = resolve_device(cfg.device)
    dist = init_distributed(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    previous_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        with Deterministic():
            trainer = Trainer(cfg, device, dist)
            trainer.resume()
            trainer.prepare()
            return trainer.run(on_event, should_stop)
    finally:
        torch.set_num_threads(previous_threads)
        if dist.enabled and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------------
# Command line


STOPPED_EXIT = 130  # exit status of a training stopped by Ctrl-C / SIGTERM after saving its checkpoint


def stop_on_signals() -> Callable[[], bool]:
    """A should_stop callable that turns Ctrl-C / SIGTERM into a clean stop with a checkpoint."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if received:  # a second signal: stop right away
            raise KeyboardInterrupt
        received.append(signum)
        print("stopping after this step and saving a checkpoint (signal again to abort)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: bool(received)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hinet.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML TrainConfig (configs/*.yaml); defaults when omitted")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optimizer.lr=5e-4 --set model.config.wf=8",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="require an existing training state in the run folder (resuming is automatic anyway)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (debug)")
    parser.add_argument("-q", "--quiet", action="count", default=0, help="warnings and errors only")
    args = parser.parse_args(argv)
    configure_logging(args.verbose - args.quiet)
    try:
        cfg = load_config(args.config, args.overrides)
        if args.no_progress:
            cfg.progress = False
        if args.resume and not has_state(cfg.run_dir):
            raise ConfigError(f"--resume: {cfg.run_dir} holds no training state to resume")
        should_stop = stop_on_signals()
        result = train(cfg, should_stop=should_stop)
    except HINetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result, indent=1))
    # a stop on request is not a finished run: a non-zero status halts scripts that chain trainings, also
    # when the signal came after the loop (a finished run that only reported, the last step's save)
    return STOPPED_EXIT if result["stopped"] or should_stop() else 0


if __name__ == "__main__":
    sys.exit(main())
