"""Shared helpers of the benchmark scripts: device clocks and medians of timed repeats, peak memory, FLOP counting,
seeded audio, the environment record, and Markdown/JSON output.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from upstream_ehmam.frontend import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent

# Dense bf16 peak of the GPUs we expect (docs/design.md "Performance"); matched against the CUDA device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}


# ---------------------------------------------------------------- devices and clocks


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda' or 'cuda:N' -> torch.device; a ValueError when CUDA is asked for and not there."""
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"--device: expected cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is visible (torch {torch.__version__})")
    device = torch.device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so that a host clock read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def autocast_for(device: torch.device, dtype: torch.dtype | None):
    """bf16 autocast context on the device, or a no-op context when dtype is None (fp32)."""
    if dtype is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=dtype)


@dataclass
class Timing:
    """Seconds per call: the warm-up calls (reported, never used) and the timed repeats."""

    warmup_s: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def spread(self) -> str:
        """min-max of the timed repeats, e.g. '12.1-13.0 ms'."""
        return f"{min(self.times_s) * 1e3:.1f}-{max(self.times_s) * 1e3:.1f} ms"


def time_call(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of fn takes on the device: CUDA events on a GPU, the host clock around a sync elsewhere."""
    synchronize(device)  # earlier queued work must not be billed to this call
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3
    begin = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - begin


def measure(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Run fn `warmup` times (kept apart), then `repeats` timed times; Timing.median_s is over the repeats only."""
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got warmup={warmup}, repeats={repeats}")
    timing = Timing()
    for _ in range(warmup):
        timing.warmup_s.append(time_call(fn, device))
    for _ in range(repeats):
        timing.times_s.append(time_call(fn, device))
    return timing


# ---------------------------------------------------------------- memory


def _read_peak_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class PeakMemory:
    """Peak memory of a measured region: CUDA max_memory_allocated on a GPU; on a CPU the resident-set peak
    (VmHWM, reset through /proc/self/clear_refs when the kernel allows it, else the process peak so far)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = "CUDA max allocated" if device.type == "cuda" else "RSS peak"

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            self.kind = "RSS peak (process so far)"

    def read_bytes(self) -> int | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        peak = _read_peak_rss_bytes()
        if peak is None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            self.kind = "RSS peak (process so far)"
        return peak


def format_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


# ---------------------------------------------------------------- FLOPs


def _attention_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Forward: QK^T and AV, 2 FLOPs per multiply-add."""
    b, h, s_q, d_q = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * s_q * s_k * (d_q + d_v)


def _attention_backward_flop(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    """Backward without recomputing the scores: dV, dP, dQ, dK (4 matmuls), as docs/design.md "Performance"
    counts it."""
    b, h, s_q, d_q = query_shape
    s_k, d_v = key_shape[2], value_shape[3]
    return 2 * b * h * s_q * s_k * (2 * d_v + 2 * d_q)


def _attention_mapping() -> dict:
    """Our formulas for every fused SDPA kernel. torch's FlopCounterMode has none for the CPU kernel (attention on
    a CPU would count 0) and counts a score recompute in the CUDA backwards; docs/design.md "Performance" counts the
    model's maths without recompute (MFU convention), and the unfused math path (CPU with dropout) is plain bmm."""
    aten = torch.ops.aten
    mapping = {}
    for name in (
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_cudnn_attention",
    ):
        if hasattr(aten, name):
            mapping[getattr(aten, name)] = _attention_flop
        if hasattr(aten, name + "_backward"):
            mapping[getattr(aten, name + "_backward")] = _attention_backward_flop
    return mapping


def flop_counter() -> FlopCounterMode:
    """A silent FlopCounterMode that counts fused attention on every device the same way."""
    return FlopCounterMode(display=False, custom_mapping=_attention_mapping())


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """(total FLOPs of one call of fn, FLOPs per aten op name) as torch.utils.flop_counter counts them
    (matmuls, convolutions and attention, forward and backward; elementwise ops count 0)."""
    with flop_counter() as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


def default_peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU (H100/H200 989, A100 312); None on a CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


# ---------------------------------------------------------------- audio


def seeded_audio(batch: int, num_samples: int, seed: int) -> torch.Tensor:
    """(batch, num_samples) float32 CPU waveforms, the same for a given seed on every machine: noise with a
    syllable-rate envelope, each utterance normalised to zero mean and unit variance
    (as the loader and the expert normalise)."""
    if batch < 1 or num_samples < 1:
        raise ValueError(f"need batch >= 1 and num_samples >= 1, got {batch} and {num_samples}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, num_samples, generator=generator)  # (B, S)
    t = torch.arange(num_samples) / SAMPLE_RATE
    rate = 2 + 4 * torch.rand(batch, 1, generator=generator)  # 2-6 Hz syllable-like modulation
    envelope = 0.2 + torch.sin(2 * torch.pi * rate * t[None, :]).abs()  # (B, S)
    wav = noise * envelope
    return torch.nn.functional.layer_norm(wav, (num_samples,), eps=1e-5)


# ---------------------------------------------------------------- environment and output


def package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # not installed, or metadata missing
        return "not installed"


def environment(device: torch.device) -> dict[str, Any]:
    """What a results table needs to be read: device, versions, threads, date, the command."""
    return {
        "device": f"{device.type}: {device_name(device)}",
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "torchaudio": package_version("torchaudio"),
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
    }


def command_line() -> str:
    """The command as typed: `python -m bench.NAME ...` for a module run with -m, else the script's path."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = ["-m", spec.name] if spec is not None and spec.name else [sys.argv[0]]
    return shlex.join([Path(sys.executable).name, *program, *sys.argv[1:]])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; every cell is str()-ed, numbers are expected pre-formatted."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"table row has {len(row)} cells, the header {len(headers)}: {row}")
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def write_json(path: str | Path, section: str, rows: list[dict], device: torch.device, settings: dict) -> None:
    """Machine-readable rows plus the environment and the settings that produced them."""
    payload = {"section": section, "environment": environment(device), "settings": settings, "rows": rows}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, default=str) + "\n")


SHARED_OPTIONS: dict[str, tuple[str, dict]] = {
    "device": ("--device", dict(default="cpu", help="cpu | cuda | cuda:N (default cpu)")),
    "threads": (
        "--threads",
        dict(type=int, default=None, help="torch intra-op threads (default: torch's default, i.e. the cores it sees)"),
    ),
    "warmup": ("--warmup", dict(type=int, default=None, help="untimed calls first (default per device)")),
    "repeats": ("--repeats", dict(type=int, default=None, help="timed calls; the median is reported")),
    "seed": ("--seed", dict(type=int, default=0, help="seed of the audio, the models or the draws (default 0)")),
    "quick": ("--quick", dict(action="store_true", help="smallest sizes: a smoke run in a few seconds")),
    "json": ("--json", dict(default=None, metavar="PATH", help="also write the rows as JSON here")),
    "precision": (
        "--precision",
        dict(
            choices=("fp32", "bf16"),
            default=None,
            help="default: bf16 autocast on CUDA, fp32 on CPU (as run.precision=auto)",
        ),
    ),
}
TIMING_OPTIONS = ("device", "threads", "warmup", "repeats", "seed", "quick", "json")


def bench_parser(doc: str | None, options: Sequence[str] = TIMING_OPTIONS) -> argparse.ArgumentParser:
    """The argument parser of a benchmark script: its docstring as help, and the shared `options`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in options:
        flag, kwargs = SHARED_OPTIONS[name]
        parser.add_argument(flag, **kwargs)
    return parser


def override_sizes(sizes: Any, **values: Any) -> None:
    """Set each size the command line gave on a script's default sizes (None keeps the default)."""
    for name, value in values.items():
        if value is not None:
            setattr(sizes, name, value)


def resolve_precision(precision: str | None, device: torch.device) -> tuple[str, torch.dtype | None]:
    """--precision (default bf16 on CUDA, fp32 on CPU) -> (its name, the autocast dtype or None for fp32)."""
    precision = precision or ("bf16" if device.type == "cuda" else "fp32")
    return precision, torch.bfloat16 if precision == "bf16" else None


def apply_threads(threads: int | None) -> int:
    """Set torch's intra-op threads when asked; return the count in use."""
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
