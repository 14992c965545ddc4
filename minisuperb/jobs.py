"""Audio jobs and the worker pool that runs them. A job fully specifies one output file (text, voice,
channel and random seed), so the bytes written depend on the job alone, not on worker count or order."""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import soundfile as sf
from tqdm import tqdm

from . import dsp
from .engine import EspeakClient
from .text import align_to_lexicon
from .voices import Render


@dataclass(frozen=True)
class Job:
    """One audio file. Exactly one of `render` (speech) and `noise` (a noise recording) is set."""

    path: str  # absolute output path; .wav or .flac
    seed: tuple[int, ...]  # key of this file's own numpy Generator
    channel: dsp.Channel = dsp.Channel()
    render: Render | None = None
    noise: str | None = None  # background noise kind (dsp.background_noise)
    noise_dbfs: float = -30.0
    align: tuple[str, ...] | None = None  # lexicon phones: also return frame-level phone labels


@dataclass(frozen=True)
class JobResult:
    num_samples: int
    phones: tuple[str, ...] | None = None
    starts: tuple[int, ...] | None = None


_ENGINE = None  # the worker's initialised espeak engine


def _init_worker() -> None:
    global _ENGINE
    _ENGINE = EspeakClient()


def render_speech(job: Job, rng: np.random.Generator) -> tuple[np.ndarray, JobResult]:
    r = job.render
    pcm, events = _ENGINE.synth(r.text, r.voice, r.rate, r.pitch, r.prange)
    ratio = dsp.vtlp_ratio(r.alpha, _ENGINE.sample_rate)
    x = dsp.vtlp_resample(np.frombuffer(pcm, np.int16).astype(np.float64) / 32768.0, ratio)
    x = dsp.tilt(x, r.tilt)
    if r.lowpass_hz is not None:
        x = dsp.lowpass(x, r.lowpass_hz)
    if r.drive is not None:
        x = dsp.soft_clip(x, r.drive)
    x = dsp.set_level(dsp.highpass(x), dsp.TARGET_DBFS + r.gain_db)
    x, offset = dsp.apply_channel(x, job.channel, rng)
    if job.align is None:
        return x, JobResult(x.size)
    events16 = [(name, int(round(s * ratio.numerator / ratio.denominator)) + offset) for name, s in events]
    phones, starts = align_to_lexicon(job.align, events16, x.size)
    return x, JobResult(x.size, tuple(phones), tuple(starts))


def run_job(job: Job) -> JobResult:
    rng = np.random.default_rng(list(job.seed))
    if job.render is not None:
        x, result = render_speech(job, rng)
    else:
        n = job.channel.length
        x = dsp.background_noise(job.noise, n, rng) * 10 ** (job.noise_dbfs / 20)
        result = JobResult(n)
    fmt = "FLAC" if job.path.endswith(".flac") else "WAV"
    os.makedirs(os.path.dirname(job.path), exist_ok=True)
    sf.write(job.path, dsp.to_int16(x), dsp.SAMPLE_RATE, subtype="PCM_16", format=fmt)
    return result


class Executor:
    """A pool of forkserver workers (they never inherit the parent's lexicons), each with its own
    espeak-ng server process; synthesis runs there, the DSP and file writing in the worker."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["minisuperb.jobs"])
        self._pool = ctx.Pool(workers, initializer=_init_worker)
        self.workers = workers

    def run(self, jobs: Sequence[Job], desc: str, progress: bool = True) -> list[JobResult]:
        """Results in job order."""
        chunk = max(1, min(8, len(jobs) // (self.workers * 8)))
        it: Iterator[JobResult] = self._pool.imap(run_job, jobs, chunksize=chunk)
        return list(tqdm(it, total=len(jobs), desc=desc, unit="file", disable=not progress, leave=False))

    def close(self) -> None:
        self._pool.close()
        self._pool.join()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()
        else:
            self._pool.terminate()
            self._pool.join()


def probe_engine() -> str:
    """Start and stop an engine server; its espeak-ng version. Raises EngineUnavailable with a hint."""
    client = EspeakClient()
    client.close()
    return client.version
