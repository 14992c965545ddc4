"""Log-mel reference frames on a model's frame grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from upstream_ehmam.frontend import SAMPLE_RATE

# the reference's default grid: the Base CNN's, 25 ms windows every 20 ms (frame t reads samples [320t, 320t + 400))
MEL_BINS, FRAME_WINDOW, FRAME_HOP = 80, 400, 320


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(n_freqs, n_mels) triangular filters evenly spaced on the HTK mel scale from 0 Hz to Nyquist (torchaudio's):
    the mel front end's own filterbank, built once per shape."""
    from upstream_ehmam.frontend import mel_filterbank as model_filterbank

    return model_filterbank(n_mels, sample_rate, n_fft=2 * (n_freqs - 1))


def log_mel_frames(
    wav: torch.Tensor, num_frames: int, n_mels: int = MEL_BINS, window: int = FRAME_WINDOW, hop: int = FRAME_HOP
) -> torch.Tensor:
    """(S,) waveform -> (num_frames, n_mels) log-mel power: Hann window of `window` samples every `hop`, no
    centring. Called with the model's receptive field and downsample rate (400 / 320 for the Base CNN, 560 / 320
    for the mel front end), so frame t covers exactly the samples model frame t reads."""
    if wav.shape[0] < window:
        wav = F.pad(wav, (0, window - wav.shape[0]))
    frames = wav.float().unfold(0, window, hop)[:num_frames]  # (T, window)
    if frames.shape[0] < num_frames:
        raise ValueError(
            f"{wav.shape[0]} samples give {frames.shape[0]} mel frames, fewer than the {num_frames} model frames"
        )
    n_fft = 1 << (window - 1).bit_length()  # 512 for 400 samples, 1024 for 560
    spectrum = torch.fft.rfft(frames * torch.hann_window(window, periodic=True), n=n_fft).abs().pow(2)  # (T, F)
    return torch.log(spectrum @ mel_filterbank(spectrum.shape[1], n_mels) + 1e-6)
