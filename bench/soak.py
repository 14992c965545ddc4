"""Soak test: SIGKILL a tiny CPU pretraining at random moments N times, rerun the same command after each kill,
and compare the finished run with an uninterrupted one (losses and weights must be identical).

Run: python -m bench.soak [--kills 20] [--steps 40] [--save-every 2] [--seed 0] [--work DIR]
Prints a table (kills, resumes, kills during a checkpoint write, corrupt checkpoints, max loss and parameter
differences); exits 1 when a checkpoint was corrupt or the two runs differ. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from bench.common import bench_parser
from pretrain.manifest import write_manifest
from upstream_ehmam.checkpoint import load_checkpoint
from upstream_ehmam.frontend import SAMPLE_RATE

ROOT = Path(__file__).resolve().parent.parent


def write_corpus(root: Path, count: int = 8, seed: int = 0) -> Path:
    """`count` 2.2-3 s chirps with noise, and their manifest."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        t = np.arange(int(rng.uniform(2.2, 3.0) * SAMPLE_RATE)) / SAMPLE_RATE
        wav = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t * (1 + 0.2 * t)) + 0.05 * rng.standard_normal(t.shape)
        sf.write(root / f"utt{i}.flac", wav.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    write_manifest(root, root / "train.tsv")
    return root / "train.tsv"


class Run:
    """One run directory and the command that starts or continues it (the same command every time)."""

    def __init__(self, out_dir: Path, manifest: Path, steps: int, save_every: int) -> None:
        self.out_dir = out_dir
        overrides = [
            f"data.manifest={manifest}",
            f"run.out_dir={out_dir}",
            f"optim.max_steps={steps}",
            "optim.warmup_steps=5",
            "run.log_every=1",
            f"run.save_every={save_every}",
            "run.keep_checkpoints=3",
            "data.max_samples=32000",
            "data.max_batch_samples=64000",
            "run.device=cpu",
            "run.collapse_check_after=1000000",
        ]
        self.command = [
            sys.executable,
            str(ROOT / "pretrain" / "run.py"),
            "--config",
            str(ROOT / "pretrain" / "tiny.yaml"),
        ]
        for item in overrides:
            self.command += ["--set", item]
        # one thread everywhere: the same kernels, hence bitwise the same numbers, in every process
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

    def start(self) -> subprocess.Popen:
        with open(self.out_dir.parent / f"{self.out_dir.name}.log", "a") as log:
            return subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def records(self) -> int:
        path = self.out_dir / "metrics.jsonl"
        return path.read_text().count("\n") if path.exists() else 0

    def metrics_file_id(self) -> int | None:
        """The inode of metrics.jsonl: every start rewrites the file (dropping records a kill made stale)."""
        path = self.out_dir / "metrics.jsonl"
        return path.stat().st_ino if path.exists() else None

    def temporaries(self) -> set[str]:
        """Partial files a kill left behind (a rerun removes them)."""
        return {p.name for p in self.out_dir.glob(".*") if p.name.endswith(".tmp") or p.name == ".last.pt.link"}

    def saved_update(self) -> int:
        """The update last.pt holds; 0 when there is none (or it is corrupt: counted by corrupt_checkpoints)."""
        try:
            return load_checkpoint(self.out_dir / "last.pt")["train_state"]["update"]
        except (ValueError, FileNotFoundError):
            return 0

    def losses(self) -> list[tuple[int, float]]:
        lines = (self.out_dir / "metrics.jsonl").read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, lines)]


def corrupt_checkpoints(out_dir: Path) -> list[str]:
    """Every checkpoint file in the run directory that does not load, with the reason."""
    bad = []
    for path in sorted(out_dir.glob("*.pt")):
        try:
            load_checkpoint(path)
        except (ValueError, FileNotFoundError) as err:
            bad.append(f"{path.name}: {err}")
    return bad


def max_weight_difference(a: Path, b: Path) -> float:
    """Largest absolute difference over student, teacher, heads and optimiser-state tensors of two checkpoints."""
    ca, cb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    pairs = [(ca[k], cb[k]) for k in ("encoder", "teacher_context")]
    pairs += [(ca["heads"][k], cb["heads"][k]) for k in ca["heads"]]
    pairs += [(ca["optimizer"]["state"][i], cb["optimizer"]["state"][i]) for i in ca["optimizer"]["state"]]
    worst = 0.0
    for x, y in pairs:
        for key, value in x.items():
            if isinstance(value, torch.Tensor):
                worst = max(worst, float((value.double() - y[key].double()).abs().max()) if value.numel() else 0.0)
    return worst


def wait_for(condition, proc: subprocess.Popen, timeout: float = 300.0) -> bool:
    """True once condition() holds; False if the process exited first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("the run made no progress")
        time.sleep(0.005)
    return True


def soak(kills: int, steps: int, save_every: int, seed: int, work: Path) -> dict:
    rng = np.random.default_rng(seed)
    manifest = write_corpus(work / "audio")
    reference = Run(work / "reference", manifest, steps, save_every)
    started = time.monotonic()
    proc = reference.start()
    wait_for(lambda: reference.records() >= 1, proc)
    startup = time.monotonic() - started
    if proc.wait() != 0:
        raise RuntimeError(f"the reference run failed; see {work / 'reference.log'}")
    step_time = (time.monotonic() - started - startup) / max(steps - 1, 1)
    print(f"reference: {steps} updates, start-up {startup:.1f} s, {step_time * 1000:.0f} ms per update", flush=True)

    run = Run(work / "soak", manifest, steps, save_every)
    result = {"kills": 0, "resumes": 0, "kills_while_saving": 0, "corrupt": [], "starts": 0}
    while result["kills"] < kills:
        position, old_metrics, old_temporaries = run.saved_update(), run.metrics_file_id(), run.temporaries()
        result["resumes"] += position > 0
        result["starts"] += 1
        proc = run.start()
        # spread the kills over the run: on average the remaining updates / the remaining kills apart
        stride = max(1, round(2 * (steps - 1 - position) / (kills - result["kills"] + 1)))
        if rng.random() < 0.2 or position >= steps - 2:
            time.sleep(rng.uniform(0, startup))  # during start-up, resume or the first updates
        else:
            target = int(rng.integers(position + 1, min(position + stride, steps - 2) + 1))
            aim_at_save = rng.random() < 0.35
            if aim_at_save:  # the log line of a checkpointed update comes just before its save
                target = min(-(-target // save_every) * save_every, steps - 2)
            if not wait_for(lambda: run.metrics_file_id() not in (None, old_metrics) and run.records() >= target, proc):
                break  # finished on its own
            # within the save that follows, or anywhere in the next update, its log line or its save
            time.sleep(rng.uniform(0, 0.08) if aim_at_save else rng.uniform(0, 1.5 * step_time))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        result["kills"] += 1
        result["kills_while_saving"] += bool(run.temporaries() - old_temporaries)
        result["corrupt"] += corrupt_checkpoints(run.out_dir)
        print(
            f"kill {result['kills']:2d}: checkpoint at update {run.saved_update():3d}, {run.records():3d} log records",
            flush=True,
        )

    result["resumes"] += run.saved_update() > 0
    proc = run.start()  # the same command once more, left to finish
    if proc.wait() != 0:
        raise RuntimeError(f"the final rerun failed; see {work / 'soak.log'}")
    result["corrupt"] += corrupt_checkpoints(run.out_dir)
    ref_losses, soak_losses = reference.losses(), run.losses()
    result["records_equal"] = [s for s, _ in ref_losses] == [s for s, _ in soak_losses] == list(range(1, steps + 1))
    result["max_loss_diff"] = max(abs(a - b) for (_, a), (_, b) in zip(ref_losses, soak_losses))
    result["max_param_diff"] = max_weight_difference(reference.out_dir / "last.pt", run.out_dir / "last.pt")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, ["seed"])  # --seed: of the kill moments
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver (default 20)")
    parser.add_argument("--steps", type=int, default=40, help="updates of the tiny run (default 40)")
    parser.add_argument("--save-every", type=int, default=2, help="updates between checkpoints (default 2)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.steps < 4 or args.save_every < 1:
        parser.error("need --kills >= 1, --steps >= 4, --save-every >= 1")
    work = args.work or Path(tempfile.mkdtemp(prefix="ehmam_soak_"))
    work.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    result = soak(args.kills, args.steps, args.save_every, args.seed, work)
    ok = (
        not result["corrupt"]
        and result["records_equal"]
        and result["max_param_diff"] == 0.0
        and result["max_loss_diff"] == 0.0
    )
    print()
    print(
        "| kills | resumes | kills during a checkpoint write | corrupt checkpoints | log records identical "
        "| max loss diff | max parameter diff |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {result['kills']} | {result['resumes']} | {result['kills_while_saving']} | {len(result['corrupt'])} "
        f"| {'yes' if result['records_equal'] else 'NO'} | {result['max_loss_diff']:.3g} "
        f"| {result['max_param_diff']:.3g} |"
    )
    for line in result["corrupt"]:
        print(f"corrupt: {line}")
    print(
        f"\n{'PASS' if ok else 'FAIL'}: {args.steps} updates, checkpoint every {args.save_every}, "
        f"{time.monotonic() - began:.0f} s; runs in {work}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
