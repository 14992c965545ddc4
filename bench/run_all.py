"""Run every benchmark (training step, inference, data loading, step profile) and write one Markdown file with all
tables, the device, versions, threads, date and the exact commands.

Run: python -m bench.run_all --device cpu|cuda [--quick] [--out bench/RESULTS_<device>.md] [--json all.json]
Each section runs in its own Python process (a crash, an out-of-memory kill or a hang in one is reported in the
file and the others still run); --in-process runs them in this process instead (faster start, less isolation).
Exit status 1 when a section failed (the file is written anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench.common import bench_parser, command_line, environment, markdown_table, resolve_device
from trainkit.cli import comma_list

ROOT = Path(__file__).resolve().parent.parent

# (name, module, title); each module has main(argv) printing "## <title>" and its tables to stdout.
SECTIONS = [
    ("train_step", "bench.train_step", "Training step throughput"),
    ("inference", "bench.inference", "Inference (feature extraction)"),
    ("data_loading", "bench.data_loading", "Data loading (FLAC decode + crop + collate)"),
    ("profile_step", "bench.profile_step", "Profile of one training step"),
]
TAIL_CHARS = 4000


@dataclass
class SectionResult:
    name: str
    title: str
    command: str
    ok: bool = False
    markdown: str = ""
    error: str = ""
    seconds: float = 0.0
    payload: dict | None = field(default=None)


def section_argv(name: str, args: argparse.Namespace, json_path: Path) -> list[str]:
    argv = ["--device", args.device, "--json", str(json_path)]
    if args.quick:
        argv.append("--quick")
    if args.threads is not None:
        argv += ["--threads", str(args.threads)]
    if name == "train_step" and args.peak_tflops is not None:
        argv += ["--peak-tflops", str(args.peak_tflops)]
    return argv


def run_subprocess(module: str, argv: list[str], timeout: float) -> tuple[bool, str, str]:
    """(ok, stdout, problem) of `python -m module argv` from the project root."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as err:
        stderr = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else (err.stderr or "")
        return False, "", f"timed out after {timeout:.0f} s (--section-timeout)\n{stderr[-TAIL_CHARS:]}"
    if done.returncode != 0:
        return False, done.stdout, f"exit status {done.returncode}\n{done.stderr[-TAIL_CHARS:]}"
    return True, done.stdout, ""


def run_in_process(module: str, argv: list[str]) -> tuple[bool, str, str]:
    """(ok, stdout, problem) of module.main(argv) called here, stdout captured."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            status = importlib.import_module(module).main(argv)
    except KeyboardInterrupt:
        raise
    except BaseException:  # SystemExit from argparse included: report it and go on with the next section
        return False, captured.getvalue(), traceback.format_exc()[-TAIL_CHARS:]
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if status not in (0, None):
        return False, captured.getvalue(), f"main() returned {status}"
    return True, captured.getvalue(), ""


def run_sections(args: argparse.Namespace, workdir: Path) -> list[SectionResult]:
    wanted = comma_list(args.sections) if args.sections else [name for name, _, _ in SECTIONS]
    unknown = sorted(set(wanted) - {name for name, _, _ in SECTIONS})
    if unknown:
        raise ValueError(
            f"--sections: unknown section {unknown[0]!r}; known: {', '.join(name for name, _, _ in SECTIONS)}"
        )
    results = []
    for name, module, title in SECTIONS:
        if name not in wanted:
            continue
        json_path = workdir / f"{name}.json"
        argv = section_argv(name, args, json_path)
        shown = argv[:2] + argv[4:]  # without the temporary --json path
        result = SectionResult(name, title, command=f"python -m {module} {' '.join(shown)}")
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        begin = time.perf_counter()
        if args.in_process:
            ok, stdout, problem = run_in_process(module, argv)
        else:
            ok, stdout, problem = run_subprocess(module, argv, args.section_timeout)
        result.seconds = time.perf_counter() - begin
        result.ok, result.markdown, result.error = ok, stdout.strip(), problem
        if ok and json_path.exists():
            result.payload = json.loads(json_path.read_text())
        print(f"[run_all] {name}: {'ok' if ok else 'FAILED'} in {result.seconds:.1f} s", file=sys.stderr, flush=True)
        results.append(result)
    return results


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def render(results: list[SectionResult], env: dict, args: argparse.Namespace) -> str:
    lines = [f"# EH-MAM benchmarks ({args.device}{', quick' if args.quick else ''})", ""]
    info = [
        ["device", env["device"]],
        ["torch", env["torch"]],
        ["transformers", env["transformers"]],
        ["torchaudio", env["torchaudio"]],
        ["python", env["python"]],
        ["threads (torch intra-op)", env["threads"]],
        ["CPU cores", env["cpu_count"]],
        ["date (UTC)", env["date"]],
        ["git commit", git_commit()],
        ["command", f"`{env['command']}`"],
    ]
    lines += [markdown_table(["", ""], info), ""]
    status = [[r.name, "ok" if r.ok else "**FAILED**", f"{r.seconds:.1f}", f"`{r.command}`"] for r in results]
    lines += [markdown_table(["section", "status", "wall s", "command"], status), ""]
    for r in results:
        if r.ok:
            lines += [r.markdown, ""]
            continue
        lines += [
            f"## {r.title}",
            "",
            f"**FAILED** after {r.seconds:.1f} s; the other sections ran.",
            "",
            "```",
            r.error.strip(),
            "```",
            "",
        ]
        if r.markdown:
            lines += ["Output before the failure:", "", r.markdown, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, ["device", "quick", "json", "threads"])  # passed on to every section
    parser.add_argument("--out", default=None, help="Markdown file (default bench/RESULTS_<device>.md)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak TFLOP/s for the MFU column")
    parser.add_argument(
        "--sections", default=None, help=f"comma-separated subset of {', '.join(n for n, _, _ in SECTIONS)}"
    )
    parser.add_argument("--in-process", action="store_true", help="run the sections in this process")
    parser.add_argument("--section-timeout", type=float, default=1200.0, help="seconds before a section is stopped")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else ROOT / "bench" / f"RESULTS_{args.device.replace(':', '')}.md"
    env = environment(device)
    env["command"] = command_line()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_sections(args, Path(tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(results, env, args) + "\n")
    if args.json:
        payload = {"environment": env, "sections": {r.name: r.payload if r.ok else {"error": r.error} for r in results}}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    failed = [r.name for r in results if not r.ok]
    print(f"wrote {out}" + (f"; FAILED sections: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
