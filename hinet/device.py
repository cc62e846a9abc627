"""Where training runs: the device, its label, the precision it trains in, and the torchrun process group.

Under `torchrun` (RANK / WORLD_SIZE set) every process is one rank of a `Distributed` group (gloo on the
CPU, nccl on CUDA); without it there is one rank and every collective is a no-op.
"""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from hinet.errors import ConfigError
from hinet.inference import cpu_has_native_bf16

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device is cuda but no CUDA GPU is available; use device: cpu or auto")
    return torch.device(name)


def describe_device(device: torch.device | str = "cpu") -> str:
    """A short human label such as "cpu: 2 vCPU AMD EPYC 7R13 Processor" or "cuda: NVIDIA H100"."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if not model_name:
        model_name = platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu: {cores} vCPU {model_name}".strip()


def use_bf16(requested: bool, device: torch.device, warn: bool = True) -> bool:
    """bf16 autocast as asked, except on a CPU that would emulate it (about 16x slower, see
    `hinet.inference.cpu_has_native_bf16`): there the run trains in fp32 and says so."""
    if not requested or device.type != "cpu" or cpu_has_native_bf16():
        return requested
    if warn:
        log.warning(
            "bf16=true ignored: this CPU has no native bf16 (AVX512-BF16 or AMX) and emulated bf16 is "
            "many times slower than fp32; training in fp32"
        )
    return False


def precision_label(bf16: bool) -> str:
    """How a run trains, as checkpoints record it (`precision` metadata)."""
    return "bf16 autocast" if bf16 else "fp32"


class Deterministic:
    """Turn on deterministic algorithms for the duration of a run and restore the previous setting."""

    def __enter__(self) -> None:
        self.previous = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.use_deterministic_algorithms(True, warn_only=True)

    def __exit__(self, *exc: object) -> None:
        torch.use_deterministic_algorithms(self.previous[0], warn_only=self.previous[1])


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def any(self, flag: bool) -> bool:
        """True on every rank when `flag` is true on any rank (keeps ranks in step on stop/cancel)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)


def init_distributed(device: torch.device) -> Distributed:
    """This process's rank from torchrun's environment (one rank without it); joins the process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, local_rank)
