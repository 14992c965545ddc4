"""numpy/scipy signal processing for mini-SUPERB: VTLP resampling, tilt, emotion colouring, channels
(room reverb, device band limit, additive noise) and the background-noise recordings. No dither."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import butter, fftconvolve, lfilter, resample_poly, sosfilt

from upstream_ehmam.frontend import SAMPLE_RATE

TARGET_DBFS = -23.0  # speech RMS before per-speaker / per-utterance gains
NOISE_KINDS = ("white", "pink", "brown")


@dataclass(frozen=True)
class Channel:
    """What happens to the voice after synthesis: length fitting, room, device and noise."""

    pad_start: int = 0  # leading silence in samples (espeak starts speaking at sample 0)
    length: int | None = None  # exact output length in samples; None keeps the synthesised length
    place: bool = False  # with length: trim silences and put the speech at a random offset
    rt60: float | None = None  # synthetic room reverb time in seconds
    drr_db: float = 6.0  # direct-to-reverberant ratio
    lowpass_hz: float | None = None  # device band limit
    noise: str | None = None  # additive noise kind (NOISE_KINDS)
    snr_db: float = 30.0
    floor_snr_db: float = 55.0  # faint white floor, so there is never digital silence


def vtlp_ratio(alpha: float, native_rate: int) -> Fraction:
    """Resampling ratio that treats the signal as recorded at native_rate * alpha (formant shift)."""
    return Fraction(SAMPLE_RATE, int(round(native_rate * alpha))).limit_denominator(64)


def vtlp_resample(x: np.ndarray, ratio: Fraction) -> np.ndarray:
    return resample_poly(x, ratio.numerator, ratio.denominator)


def tilt(x: np.ndarray, coefficient: float) -> np.ndarray:
    """First-order spectral tilt: y[n] = x[n] - c x[n-1]."""
    return lfilter([1.0, -coefficient], [1.0], x)


def lowpass(x: np.ndarray, cutoff_hz: float, order: int = 4) -> np.ndarray:
    if cutoff_hz >= 0.47 * SAMPLE_RATE:
        return x
    return sosfilt(butter(order, cutoff_hz, btype="low", fs=SAMPLE_RATE, output="sos"), x)


def highpass(x: np.ndarray, cutoff_hz: float = 60.0) -> np.ndarray:
    """Removes the DC / low-frequency hum that the tilt filter leaves."""
    return sosfilt(butter(2, cutoff_hz, btype="high", fs=SAMPLE_RATE, output="sos"), x)


def soft_clip(x: np.ndarray, drive: float) -> np.ndarray:
    peak = float(np.max(np.abs(x))) or 1.0
    return np.tanh(drive * x / peak) / np.tanh(drive) * peak


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def set_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    level = rms(x)
    return x * (10 ** (dbfs / 20) / level) if level > 0 else x


def speech_bounds(x: np.ndarray, rel_threshold: float = 0.02) -> tuple[int, int]:
    """First and last sample above rel_threshold of the peak."""
    idx = np.flatnonzero(np.abs(x) > rel_threshold * (np.max(np.abs(x)) if x.size else 0))
    return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, x.size)


def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS white, pink (1/f power) or brown (1/f^2 power) noise."""
    if kind == "white":
        return rng.standard_normal(n)
    if kind not in ("pink", "brown"):
        raise ValueError(f"unknown noise kind {kind!r}; expected one of {NOISE_KINDS}")
    m = sp_fft.next_fast_len(n, real=True)  # arbitrary lengths can be slow for the FFT
    spectrum = sp_fft.rfft(rng.standard_normal(m))
    f = np.maximum(sp_fft.rfftfreq(m, 1 / SAMPLE_RATE), 20.0)
    spectrum /= np.sqrt(f) if kind == "pink" else f
    y = sp_fft.irfft(spectrum, m)[:n]
    return y / (rms(y) or 1.0)


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct path plus an exponentially decaying Gaussian tail (-60 dB at rt60)."""
    n = int(rt60 * 1.2 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.002 * SAMPLE_RATE)] = 0.0  # first reflections arrive after ~2 ms
    tail *= 10 ** (-drr_db / 20) / (np.sqrt(np.sum(tail**2)) or 1.0)
    tail[0] = 1.0
    return tail


def fit_length(x: np.ndarray, length: int, place: bool, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(signal of exactly `length` samples, offset added to sample positions)."""
    if place:  # keep only the speech, at a random position
        start, end = speech_bounds(x)
        margin = int(0.02 * SAMPLE_RATE)
        start, end = max(0, start - margin), min(x.size, end + margin)
        x = x[start:end][:length]
        x = x * _fade_out(x.size, 80) * _fade_out(x.size, 80)[::-1]  # no clicks at the cut points
        offset = int(rng.integers(0, length - x.size + 1))
        out = np.zeros(length)
        out[offset : offset + x.size] = x
        return out, offset - start
    if x.size >= length:
        return x[:length] * _fade_out(length), 0
    return np.concatenate([x, np.zeros(length - x.size)]), 0


def _fade_out(n: int, fade: int = 160) -> np.ndarray:
    w = np.ones(n)
    w[-min(fade, n) :] = np.linspace(1.0, 0.0, min(fade, n))
    return w


def apply_channel(x: np.ndarray, channel: Channel, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """(coloured signal, sample offset introduced by fitting)."""
    offset = channel.pad_start
    x = np.concatenate([np.zeros(channel.pad_start), x])
    if channel.length is not None:
        x, shift = fit_length(x, channel.length, channel.place, rng)
        offset += shift
    speech_level = rms(x)
    if channel.rt60 is not None:
        x = fftconvolve(x, room_impulse_response(channel.rt60, channel.drr_db, rng))[: x.size]
        x *= speech_level / (rms(x) or 1.0)
    if channel.lowpass_hz is not None:
        x = lowpass(x, channel.lowpass_hz, order=6)
    if channel.noise is not None:
        x = x + colored_noise(channel.noise, x.size, rng) * speech_level * 10 ** (-channel.snr_db / 20)
    x = x + rng.standard_normal(x.size) * speech_level * 10 ** (-channel.floor_snr_db / 20)
    return x, offset


def to_int16(x: np.ndarray) -> np.ndarray:
    """Peak-limit to -0.2 dBFS, then round (no dither)."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.977:
        x = x * (0.977 / peak)
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


def background_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS stand-ins for Speech Commands' _background_noise_ recordings."""
    t = np.arange(n) / SAMPLE_RATE
    if kind in NOISE_KINDS:
        y = colored_noise(kind, n, rng)
    elif kind == "running_tap":  # band-limited hiss with a slow flutter
        y = sosfilt(butter(4, [400, 4000], btype="band", fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
        y *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
    elif kind == "exercise_bike":  # whirring: low-passed noise pumped at the pedalling rate + hum
        y = lowpass(rng.standard_normal(n), 1200.0) * (1.2 + np.sin(2 * np.pi * rng.uniform(1, 2) * t))
        y += 0.3 * np.sin(2 * np.pi * rng.uniform(80, 140) * t)
    elif kind == "doing_the_dishes":  # clinks: decaying high-passed bursts over a quiet floor
        y = 0.1 * colored_noise("pink", n, rng)
        for pos in rng.integers(0, max(1, n - 1600), size=max(1, n // 4000)):
            burst = rng.standard_normal(1600) * np.exp(-np.arange(1600) / rng.uniform(80, 400))
            y[pos : pos + 1600] += burst * rng.uniform(0.5, 3.0)
    elif kind == "dude_miaowing":  # gliding harmonic tones (f0 sweep) in pink noise
        y = 0.3 * colored_noise("pink", n, rng)
        for pos in rng.integers(0, max(1, n - 12000), size=max(1, n // 24000)):
            m = int(rng.integers(4000, 12000))
            f0 = np.linspace(rng.uniform(400, 700), rng.uniform(250, 450), m)
            phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
            tone = sum(np.sin(h * phase) / h for h in (1, 2, 3)) * np.hanning(m)
            y[pos : pos + m] += 2.0 * tone
    else:
        raise ValueError(f"unknown background noise kind {kind!r}")
    return y / (rms(y) or 1.0)
