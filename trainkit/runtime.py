"""The process a training run lives in: device and precision, the DDP process group's lifetime, the stop signals,
seeds derived from integers, and the error a health check raises."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Runtime:
    device: torch.device
    rank: int
    world_size: int
    autocast_dtype: torch.dtype | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def derive_seed(*values: int) -> int:
    """A 63-bit seed from integers, stable across platforms and processes."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class TrainingAborted(RuntimeError):
    """A health check stopped the run; the last good checkpoint is left untouched."""


def init_runtime(device_setting: str, precision: str) -> Runtime:
    """The device (run.device: auto, cpu, cuda or cuda:N; under torchrun each rank its local GPU), the process group
    when WORLD_SIZE > 1, and bf16 autocast (run.precision auto: on CUDA) of this process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = device_setting
    if wanted == "auto":
        wanted = "cuda" if torch.cuda.is_available() else "cpu"
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device: {device_setting!r} asked for CUDA but no GPU is visible")
    device = torch.device(f"cuda:{local_rank}" if wanted == "cuda" and world_size > 1 else wanted)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    return Runtime(device, rank, world_size, torch.bfloat16 if bf16 else None)


@contextlib.contextmanager
def process_group_lifetime(runtime: Runtime) -> Iterator[None]:
    """Destroy the process group when the training loop ends, however it ends. After a normal end the ranks meet
    first, so none tears gloo down while another may still write its last checkpoint (seen once in CI: a rank
    aborted in teardown, "terminate called without an active exception")."""
    try:
        yield
        if runtime.world_size > 1:
            dist.barrier()
    finally:
        if runtime.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


class StopSignal:
    """SIGTERM/SIGINT ask the loop to checkpoint and exit after this update; a second one acts at once."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous = {}

    def __enter__(self) -> "StopSignal":
        for sig in (signal.SIGTERM, signal.SIGINT):
            # a SIGINT ignored at start-up (nohup, `cmd &` from a script) stays ignored, as Unix jobs expect
            if sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            self.__exit__()
            signal.raise_signal(signum)
            return
        self.received = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def init_loader_worker(worker_id: int) -> None:
    """A DataLoader worker of either trainer: one intra-op thread, SIGINT left to the main process."""
    # N workers x default intra-op threads oversubscribe the cores (docs/design.md "Performance", fairseq #3342)
    torch.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the main process finishes its update and checkpoints, which may
    # still need batches, so workers leave SIGINT to it (they exit with the main process as usual).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
