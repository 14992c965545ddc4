"""The log-mel front end (`model.frontend: mel`, after MelHuBERT), a cheaper replacement for the CNN: 80-bin
log-mel every 10 ms, normalised (`model.mel_norm`), two frames stacked per 20 ms frame, a Linear to the width.
Which samples a frame reads and how it is normalised: docs/design.md "Encoder"."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000  # the one sample rate of the project: every model input and corpus file
MEL_WINDOW = 400  # 25 ms
MEL_HOP = 160  # 10 ms
STACK = 2  # mel frames per model frame: 20 ms, 50 frames per second like the CNN
LOG_FLOOR = 1e-6  # keeps log() finite on digital silence
STD_FLOOR = 1e-5  # a constant bin (or a one-frame utterance) is centred, not blown up


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int, sample_rate: int = SAMPLE_RATE, n_fft: int = MEL_WINDOW) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) float32: torchaudio's HTK filterbank (0 Hz to Nyquist, no norm), without torchaudio."""
    freqs = torch.linspace(0, sample_rate // 2, n_fft // 2 + 1)  # (F,) STFT bin frequencies
    mel_max = 2595.0 * math.log10(1.0 + (sample_rate / 2) / 700.0)
    edges = 700.0 * (10.0 ** (torch.linspace(0.0, mel_max, n_mels + 2) / 2595.0) - 1.0)  # (n_mels + 2,) in Hz
    widths, slopes = edges[1:] - edges[:-1], edges[None, :] - freqs[:, None]  # (n_mels + 1,), (F, n_mels + 2)
    down, up = (-1.0 * slopes[:, :-2]) / widths[:-1], slopes[:, 2:] / widths[1:]
    return torch.max(torch.zeros(1), torch.min(down, up)).float()


def log_mel(wav: torch.Tensor, fbank: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """wav (B, S) float32 with S >= 400 -> (B, M, n_mels) log mel power, M = floor((S - 400) / 160) + 1."""
    spec = torch.stft(
        wav,
        n_fft=MEL_WINDOW,
        hop_length=MEL_HOP,
        win_length=MEL_WINDOW,
        window=window,
        center=False,
        return_complex=True,
    )  # (B, F, M)
    power = spec.real.square() + spec.imag.square()
    return torch.log(torch.matmul(power.transpose(1, 2), fbank) + LOG_FLOOR)  # (B, M, n_mels)


class MelLocalEncoder(nn.Module):
    """The `local` part of the encoder for frontend mel, with the CNN's interface: (wav (B, S), wav_lengths (B,))
    -> (features (B, T, D), padded frames zeroed, frame_lengths (B,)). The filterbank and window are rebuilt from
    the config (non-persistent buffers), so the state dict holds only `proj`."""

    def __init__(self, cfg):
        super().__init__()
        self.config = cfg
        n_mels = cfg.mel_bins
        self.register_buffer("fbank", mel_filterbank(n_mels).clone(), persistent=False)
        self.register_buffer("window", torch.hann_window(MEL_WINDOW, periodic=True), persistent=False)
        if cfg.mel_norm == "global":
            for name, value in (("global_mean", cfg.mel_mean), ("global_std", cfg.mel_std)):
                self.register_buffer(
                    name, torch.as_tensor(value, dtype=torch.float32).expand(n_mels).clone(), persistent=False
                )
        self.proj = nn.Linear(STACK * n_mels, cfg.embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The projection gets PyTorch's default Linear init, as the CNN path's projection does."""
        self.proj.reset_parameters()

    def normalized_log_mel(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, STACK * T, n_mels) normalised float32 mel frames that the T output frames read, frame_lengths."""
        frame_lengths = self.config.frames_for_samples(wav_lengths)
        # The spectral part runs in float32 even under bf16 autocast: the FFT and log are cheap, precision-hungry.
        # float64 when the module or the input is float64 (exactness tests); half inputs are lifted to float32.
        dtype = torch.float64 if torch.float64 in (wav.dtype, self.fbank.dtype) else torch.float32
        with torch.autocast(wav.device.type, enabled=False):
            x = wav.to(dtype)
            if x.shape[1] < MEL_WINDOW:
                x = F.pad(x, (0, MEL_WINDOW - x.shape[1]))
            mel = log_mel(x, self.fbank.to(dtype), self.window.to(dtype))  # (B, M, n_mels)
            T = mel.shape[1] // STACK
            mel = mel[:, : STACK * T]
            if self.config.mel_norm == "utterance":
                # statistics over exactly the mel frames the valid output frames read
                used = (torch.arange(STACK * T, device=mel.device)[None, :] < (STACK * frame_lengths)[:, None])[
                    ..., None
                ]  # (B, 2T, 1)
                count = used.sum(1, keepdim=True).clamp(min=1).float()  # (B, 1, 1)
                mean = mel.masked_fill(~used, 0.0).sum(1, keepdim=True) / count
                var = (mel - mean).masked_fill(~used, 0.0).square().sum(1, keepdim=True) / count
                mel = (mel - mean) / var.sqrt().clamp(min=STD_FLOOR)
            else:
                mel = (mel - self.global_mean.to(dtype)) / self.global_std.to(dtype)
        return mel, frame_lengths

    def forward(self, wav: torch.Tensor, wav_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mel, frame_lengths = self.normalized_log_mel(wav, wav_lengths)
        B, M, n_mels = mel.shape
        stacked = mel.reshape(B, M // STACK, STACK * n_mels)  # frame t = [mel 2t, mel 2t+1]
        x = self.proj(stacked.to(self.proj.weight.dtype))  # (B, T, D); autocast still picks its own dtype
        valid = torch.arange(x.shape[1], device=x.device)[None, :] < frame_lengths[:, None]
        return x.masked_fill(~valid[..., None], 0.0), frame_lengths


def mel_statistics(wavs, cfg) -> tuple[list[float], list[float]]:
    """Per-bin mean and std over the log-mel frames the model reads of normalised 1-D waveforms (mel_norm global)."""
    fbank, window = mel_filterbank(cfg.mel_bins), torch.hann_window(MEL_WINDOW, periodic=True)
    total = torch.zeros(cfg.mel_bins, dtype=torch.float64)
    total_sq = torch.zeros(cfg.mel_bins, dtype=torch.float64)
    count = 0
    for wav in wavs:
        n = STACK * int(cfg.frames_for_samples(wav.shape[0]))
        if n == 0:
            continue
        mel = log_mel(wav.float()[None], fbank, window)[0, :n].double()
        total += mel.sum(0)
        total_sq += mel.square().sum(0)
        count += n
    if count == 0:
        raise ValueError(f"no waveform is long enough for one frame ({cfg.receptive_field} samples)")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp(min=0).sqrt().clamp(min=STD_FLOOR)
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]
