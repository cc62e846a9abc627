"""The training loop: a `Trainer` holds one run's model, optimizer, data and where training stands.

    trainer = Trainer(cfg, device, dist)   # model, Adam, warm-up + cosine schedule, loss
    trainer.resume()                       # load the run folder's state, if it has one
    trainer.prepare()                      # data, run folder files, DDP wrapper, precision
    result = trainer.run(on_event, should_stop)

Everything a checkpoint saves is an attribute (`step`, `train_seconds`, `best`, `last_val`, `input_scores`),
so what is written is what the loop has, and a resumed run continues from exactly those values. A NaN/inf
loss or gradient stops the run before the optimizer step (`TrainingDiverged`), naming the step and the last
good checkpoint. Only rank 0 validates, logs and writes checkpoints, between barriers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from hinet.checkpoint import load_checkpoint, load_state_dict_checked, save_checkpoint
from hinet.config import TrainConfig
from hinet.device import Distributed, describe_device, precision_label, use_bf16
from hinet.errors import ConfigError, TrainingDiverged
from hinet.image import image_to_tensor, tensor_to_image
from hinet.inference import PLAIN_PATH, eval_mode, run_model
from hinet.losses import create_loss
from hinet.metrics import Protocol, default_protocol, evaluate_pair
from hinet.model import HINet
from hinet.runs import (
    BEST_FILE,
    LOG_FILE,
    MODEL_FILE,
    STATE_TENSORS_FILE,
    check_resumable,
    check_writable,
    has_state,
    load_run_state,
    read_state,
    save_failed,
    save_run_state,
    unwritable,
    write_run_files,
)
from hinet.training_data import TrainingData, no_training_data, prepare_training_data, sources_summary

log = logging.getLogger(__name__)

DEFAULT_WARMUP_FRACTION = 0.05
DATA_RNG_NOTE = "numpy default_rng([seed, step, rank]) per batch, nothing to restore"  # recorded in the state

# ----------------------------------------------------------------------------------------------------
# Learning-rate schedule


def warmup_steps(cfg: TrainConfig) -> int:
    """Linear warm-up length: scheduler.warmup_steps, or 5% of the steps when it is null. Warm-up lets
    every normalization start from the same learning rate without an early blow-up (no-norm and batch-norm
    variants differ most there), so the ablation does not favour the variant the rate was tuned on."""
    if cfg.scheduler.warmup_steps is not None:
        return cfg.scheduler.warmup_steps
    return max(1, round(DEFAULT_WARMUP_FRACTION * cfg.steps))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """The learning rate at `step` (0-based) divided by optimizer.lr: linear warm-up, then cosine
    annealing to scheduler.eta_min at cfg.steps. Closed form, so resuming needs no schedule history."""
    warmup = warmup_steps(cfg)
    if warmup and step < warmup:
        return (step + 1) / warmup
    if cfg.scheduler.name == "constant":
        return 1.0
    floor = min(cfg.scheduler.eta_min / cfg.optimizer.lr, 1.0)
    progress = min(max(step - warmup, 0) / max(cfg.steps - warmup, 1), 1.0)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------------------
# Validation scores


def validation_scores(
    model: HINet, val_pairs: Sequence[tuple[np.ndarray, np.ndarray]], device: torch.device, protocol: Protocol
) -> dict:
    """Mean PSNR/SSIM of the model's final output over the validation pairs (project protocol)."""
    scores = []
    with eval_mode(model):
        for lq, gt in val_pairs:
            output = run_model(model, image_to_tensor(lq).to(device), PLAIN_PATH)
            scores.append(evaluate_pair(tensor_to_image(output.cpu()), gt, protocol))
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr", "ssim")}


def input_scores(val_pairs: Sequence[tuple[np.ndarray, np.ndarray]], protocol: Protocol) -> dict:
    """Mean PSNR/SSIM of the degraded validation inputs themselves: the score a model has to beat."""
    scores = [evaluate_pair(np.clip(lq, 0, 1), gt, protocol) for lq, gt in val_pairs]
    return {key: float(np.mean([s[key] for s in scores])) for key in ("psnr", "ssim")}


# ----------------------------------------------------------------------------------------------------
# The trainer


def segments_label(segments: Sequence[dict], key: str) -> str:
    """One run's `device` or `precision` over its training stretches, e.g. "bf16 autocast + fp32"."""
    return " + ".join(dict.fromkeys(str(segment[key]) for segment in segments))


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device, dist: Distributed) -> None:
        self.cfg, self.device, self.dist, self.run_dir = cfg, device, dist, cfg.run_dir
        model_config = cfg.model_config()
        self.size_multiple = model_config.size_multiple
        if cfg.data.patch % self.size_multiple:
            raise ConfigError(
                f"data.patch={cfg.data.patch} must be a multiple of {self.size_multiple} "
                f"(2**(depth-1) for depth {model_config.depth})"
            )
        torch.manual_seed(cfg.seed)
        self.model = HINet(model_config).to(device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit memory_format
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=cfg.optimizer.lr,
            betas=(cfg.optimizer.betas[0], cfg.optimizer.betas[1]),
            weight_decay=cfg.optimizer.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(step, cfg))
        self.loss_fn = create_loss(cfg.loss.name, cfg.loss.weight)

        # Where training stands: what a checkpoint saves and `resume` restores.
        self.step = 0
        self.train_seconds = 0.0
        self.best: dict = {"psnr": None, "ssim": None, "step": None}
        self.last_val: dict | None = None
        self.input_scores: dict | None = None  # the degraded inputs' scores on the validation pairs
        self.last_saved_step: int | None = None  # None: no checkpoint in the run folder yet
        # Where each stretch of steps ran ({"from_step", "device", "precision"}): a run resumed over several
        # days can change CPU, and with it the precision (bf16 only where it is native).
        self.segments: list[dict] = []
        # The starting point when the run began from cfg.init_weights: {"init_weights", "init_steps",
        # "init_sha256"} (the file may be replaced later, e.g. a shipped model shipped again).
        self.init: dict | None = None

        # Set by `prepare`.
        self.data: TrainingData = no_training_data(cfg)
        self.train_model: torch.nn.Module = self.model  # the DDP wrapper under torchrun
        self.use_bf16 = False
        self.metadata_base: dict = {}

    # -- before the loop

    def resume(self) -> None:
        """Continue the run folder's saved state, when it has one (its config must match)."""
        if not has_state(self.run_dir):
            self.init_from_weights()
            return
        check_resumable(self.run_dir, self.cfg)
        scalars = read_state(self.run_dir) or {}
        if int(scalars.get("step", -1)) >= self.cfg.steps and not (self.run_dir / STATE_TENSORS_FILE).is_file():
            # A finished run on a fresh checkout (its git-ignored weights and optimizer state were never
            # carried): there is nothing left to train, so it reports from its scalar state instead of
            # refusing to resume and halting the scripts that chain trainings.
            saved = scalars
        else:
            saved = load_run_state(self.run_dir, self.model, self.optimizer, self.scheduler)
        self.step, self.train_seconds = int(saved["step"]), float(saved["train_seconds"])
        self.best = saved.get("best", self.best)
        self.last_val, self.input_scores = saved.get("last_val"), saved.get("input_val")
        self.segments = list(saved.get("segments", []))
        self.init = saved.get("init")
        self.last_saved_step = self.step

    def init_from_weights(self) -> None:
        """A fresh run's starting weights from `cfg.init_weights`, when it names a checkpoint: it must hold
        this run's architecture (a CheckpointError names the difference otherwise)."""
        if self.cfg.init_weights is None:
            return
        start, metadata = load_checkpoint(self.cfg.init_weights)
        load_state_dict_checked(self.model, start.state_dict(), source=self.cfg.init_weights)
        steps = str(metadata.get("steps", ""))
        self.init = {
            "init_weights": self.cfg.init_weights,
            "init_steps": int(steps) if steps.isdigit() else None,
            "init_sha256": hashlib.sha256(Path(self.cfg.init_weights).read_bytes()).hexdigest(),
            # the file may be replaced by this very run once it ships: say where it came from and what it scored
            "init_source_run": metadata.get("source_run"),
            "init_val_psnr": metadata.get("val_psnr"),
        }

    def prepare(self) -> None:
        """Data (none for a finished run), run folder files, the DDP wrapper, precision and metadata."""
        cfg, dist = self.cfg, self.dist
        if dist.is_main:
            check_writable(self.run_dir)  # before the data, which can take minutes
        if self.step < cfg.steps:
            self.data = prepare_training_data(cfg, self.size_multiple)
        if dist.is_main:
            write_run_files(self.run_dir, cfg, self.data.sources, self.step)
        dist.barrier()
        if dist.enabled:
            self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.data.val_pairs and dist.is_main and self.input_scores is None:
            self.input_scores = input_scores(self.data.val_pairs, default_protocol(cfg.task))
        strength = None if cfg.blind else cfg.resolved_strength()
        self.use_bf16 = use_bf16(cfg.bf16, self.device, warn=dist.is_main)
        here = {"device": describe_device(self.device), "precision": precision_label(self.use_bf16)}
        if self.step < cfg.steps and (not self.segments or {k: self.segments[-1][k] for k in here} != here):
            self.segments.append({"from_step": self.step, **here})
        # train_patch tells test-time tiling and local statistics (hinet.inference) the size the norms saw.
        self.metadata_base = {
            "task": cfg.task,
            "strength": strength,
            "blind": cfg.blind,
            "seed": cfg.seed,
            "device": segments_label(self.segments, "device") or here["device"],
            "trained": "true",
            "run": cfg.run_name,
            "precision": segments_label(self.segments, "precision") or here["precision"],
            "training_segments": self.segments,
            "data_sources": sources_summary(self.data.sources),
            "train_patch": cfg.data.patch,
            "lr": cfg.optimizer.lr,
            "photos": cfg.data.photos,
        }
        self.metadata_base.update(self.init or {})

    # -- the loop

    def run(
        self,
        on_event: Callable[[dict[str, Any]], object] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict:
        """Train to cfg.steps (or until `should_stop()`), then checkpoint; returns the summary."""
        cfg, dist = self.cfg, self.dist
        emit = on_event if (on_event is not None and dist.is_main) else (lambda event: None)
        try:
            log_file = open(self.run_dir / LOG_FILE, "a") if dist.is_main else None  # noqa: SIM115 - closed in finally
        except OSError as error:
            raise unwritable(self.run_dir, error) from None
        show_bar = cfg.progress and dist.is_main and sys.stderr.isatty()
        progress = tqdm(total=cfg.steps, initial=self.step, disable=not show_bar, desc=cfg.run_name, dynamic_ncols=True)
        stopped = False
        try:
            with logging_redirect_tqdm() if show_bar else nullcontext():
                self.train_model.train()
                while self.step < cfg.steps:
                    if dist.any(bool(should_stop is not None and should_stop())):
                        stopped = True
                        break
                    record = self.train_step()
                    validate_now = bool(self.data.val_pairs) and (
                        self.step == cfg.steps or bool(cfg.val_every and self.step % cfg.val_every == 0)
                    )
                    if validate_now and dist.is_main:
                        self.validate(record)
                    if log_file is not None and (
                        validate_now or self.step % max(cfg.log_every, 1) == 0 or self.step == cfg.steps
                    ):
                        log_file.write(json.dumps(record) + "\n")
                        log_file.flush()
                    emit(dict(record, kind="step"))
                    progress.update(1)
                    progress.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
                    if validate_now and dist.is_main:
                        assert self.last_val is not None  # set by validate() above
                        log.log(
                            logging.INFO if cfg.progress else logging.DEBUG,
                            "step %d: val PSNR %.2f dB, SSIM %.4f",
                            self.step,
                            self.last_val["psnr"],
                            self.last_val["ssim"],
                        )
                        emit(dict(record, kind="val"))
                        self.keep_best()
                    if self.step < cfg.steps and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                        self.checkpoint()
                if self.last_saved_step != self.step and self.step > 0:  # cancelled before step 1: nothing to save
                    self.checkpoint()
        finally:
            progress.close()
            if log_file is not None:
                log_file.close()
        result = self.summary(stopped)
        emit(
            {
                "kind": "done",
                "step": self.step,
                "loss": None,
                "lr": None,
                "val_psnr": result["val_psnr"],
                "val_ssim": result["val_ssim"],
                "wall": self.train_seconds,
                "result": result,
            }
        )
        return result

    def train_step(self) -> dict:
        """One optimizer step on batch `self.step`; returns its log record (validation scores still None)."""
        cfg, device = self.cfg, self.device
        started = time.perf_counter()
        lq, gt = self.data.batch(cfg, self.step, self.dist.rank)
        lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
        if cfg.channels_last:
            lq = lq.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            outputs = self.train_model(lq)
        loss = self.loss_fn([output.float() for output in outputs], gt)  # summed over both stages
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        loss_value = float(loss.detach())
        # The gradient is all-reduced, so every rank sees the same non-finite norm and stops together.
        if not (math.isfinite(loss_value) and bool(torch.isfinite(grad_norm))):
            where = (
                f"the last good checkpoint is {self.run_dir / MODEL_FILE} (step {self.last_saved_step})"
                if self.last_saved_step is not None
                else "no checkpoint was saved yet"
            )
            raise TrainingDiverged(
                f"training diverged at step {self.step + 1}: the loss is {loss_value} and the gradient norm "
                f"{float(grad_norm)}; {where}. Lower optimizer.lr or set grad_clip"
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        self.train_seconds += time.perf_counter() - started
        # grad_norm is measured before clipping, so a log shows how often and how hard the clip acts.
        return {
            "step": self.step,
            "loss": loss_value,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "val_psnr": None,
            "val_ssim": None,
            "wall": round(self.train_seconds, 3),
        }

    def validate(self, record: dict) -> None:
        """Score the model on the validation pairs (the time counts as training time) into `record`."""
        started = time.perf_counter()
        self.last_val = validation_scores(self.model, self.data.val_pairs, self.device, default_protocol(self.cfg.task))
        self.train_seconds += time.perf_counter() - started
        record.update(val_psnr=self.last_val["psnr"], val_ssim=self.last_val["ssim"], wall=round(self.train_seconds, 3))

    def keep_best(self) -> None:
        """Write best.safetensors when the last validation beats every earlier one."""
        assert self.last_val is not None  # called after validate()
        if self.best["psnr"] is not None and not self.last_val["psnr"] > self.best["psnr"]:
            return
        self.best = {"psnr": self.last_val["psnr"], "ssim": self.last_val["ssim"], "step": self.step}
        try:
            save_checkpoint(
                self.run_dir / BEST_FILE, self.model, metadata=self.metadata({"val_psnr": self.best["psnr"]})
            )
        except OSError as error:
            raise save_failed(BEST_FILE, self.step, self.run_dir, error) from None

    def checkpoint(self) -> None:
        """Rank 0 writes weights and state; the other ranks wait so nobody reads a half-written run folder."""
        self.dist.barrier()
        if self.dist.is_main:
            state = {
                "step": self.step,
                "train_seconds": self.train_seconds,
                "best": self.best,
                "last_val": self.last_val,
                "input_val": self.input_scores,
                "seed": self.cfg.seed,
                "world_size": self.dist.world_size,
                "data_rng": DATA_RNG_NOTE,
                "segments": self.segments,
                "init": self.init,
            }
            extra = {"val_psnr": self.last_val["psnr"]} if self.last_val else {}
            try:
                save_run_state(self.run_dir, self.model, self.optimizer, self.scheduler, state, self.metadata(extra))
            except OSError as error:
                raise save_failed("the checkpoint", self.step, self.run_dir, error) from None
        self.dist.barrier()
        self.last_saved_step = self.step

    # -- after the loop

    def metadata(self, extra: dict) -> dict:
        """Checkpoint metadata at the current step."""
        return dict(self.metadata_base, steps=self.step, train_seconds=round(self.train_seconds, 3), **extra)

    def summary(self, stopped: bool) -> dict:
        run_dir, best, last_val, scores = self.run_dir, self.best, self.last_val, self.input_scores
        return {
            "run_dir": str(run_dir),
            "step": self.step,
            "steps": self.cfg.steps,
            "stopped": stopped,
            "train_seconds": self.train_seconds,
            "wall": self.train_seconds,
            "val_psnr": last_val["psnr"] if last_val else None,
            "val_ssim": last_val["ssim"] if last_val else None,
            "best_val_psnr": best["psnr"],
            "best_val_ssim": best["ssim"],
            "best_step": best["step"],
            "input_val_psnr": scores["psnr"] if scores else None,
            "input_val_ssim": scores["ssim"] if scores else None,
            "model_path": str(run_dir / MODEL_FILE) if (run_dir / MODEL_FILE).is_file() else None,
            "best_path": str(run_dir / BEST_FILE) if (run_dir / BEST_FILE).is_file() else None,
            "log_path": str(run_dir / LOG_FILE),
        }
