"""Representations to put through ABX: an EH-MAM encoder (every hidden state), log-mel and MFCC references, and
(results/abx/s3prl_upstream.py adds any s3prl upstream). Each maps one 16 kHz waveform to a list of (T, D) frame
matrices, one per layer, with a known frame geometry.
"""

from __future__ import annotations

import logging
from typing import Protocol

import torch
import torch.nn.functional as F

from measure.logmel import FRAME_HOP, FRAME_WINDOW, MEL_BINS, log_mel_frames

from .items import FrameGeometry

log = logging.getLogger("abx")

LOG_MEL_GEOMETRY = FrameGeometry(FRAME_HOP, FRAME_WINDOW)  # 25 ms windows every 20 ms, EH-MAM's own frames
N_MFCC = 13
LOG_MEL, LOG_MEL_NORMALISED, MFCC_NAME = "log-mel", "log-mel, normalised", "MFCC + deltas, normalised"
REFERENCES = (LOG_MEL, LOG_MEL_NORMALISED, MFCC_NAME)  # the rows every run scores beside its checkpoints


class Representation(Protocol):
    name: str
    geometry: FrameGeometry

    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        """(S,) float waveform -> [L] x (T, D) on the CPU."""


def normalise_per_utterance(x: torch.Tensor) -> torch.Tensor:
    """(T, D) -> zero mean, unit variance per column over the utterance's frames."""
    return (x - x.mean(0, keepdim=True)) / x.std(0, unbiased=False, keepdim=True).clamp(min=1e-5)


class LogMel:
    """80-bin log-mel power on EH-MAM's 20 ms frames, raw or normalised per utterance."""

    def __init__(self, normalised: bool):
        self.normalised = normalised
        self.name = LOG_MEL_NORMALISED if normalised else LOG_MEL
        self.geometry = LOG_MEL_GEOMETRY

    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        mel = log_mel_frames(wav, max(1, self.geometry.frames_for(wav.shape[0])))
        return [normalise_per_utterance(mel) if self.normalised else mel]


class MFCC:
    """13 cepstra of the log-mel frames (orthonormal DCT-II) with deltas and delta-deltas, normalised per
    utterance: the classic 39-dimensional front end."""

    name = MFCC_NAME
    geometry = LOG_MEL_GEOMETRY

    def __init__(self) -> None:
        from measure.torchaudio_import import import_torchaudio  # the pure-Python part of torchaudio is enough

        self.functional = import_torchaudio().functional
        self.dct = self.functional.create_dct(N_MFCC, MEL_BINS, norm="ortho")  # (n_mels, 13)

    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        mel = log_mel_frames(wav, max(1, self.geometry.frames_for(wav.shape[0])))
        cepstra = (mel @ self.dct).T  # (13, T): compute_deltas works along the last axis
        deltas = self.functional.compute_deltas(cepstra)
        features = torch.cat([cepstra, deltas, self.functional.compute_deltas(deltas)]).T  # (T, 39)
        return [normalise_per_utterance(features)]


class EncoderLayers:
    """Every hidden state of an EH-MAM encoder (transformer input, then each block's output), fed as the s3prl
    expert feeds it: the waveform normalised, short clips padded to one receptive field."""

    def __init__(self, encoder: torch.nn.Module, name: str, device: torch.device | str = "cpu"):
        self.encoder = encoder.eval().to(device)
        self.device = torch.device(device)
        self.name = name
        cfg = encoder.config
        self.geometry = FrameGeometry(cfg.downsample_rate, cfg.receptive_field)

    @torch.inference_mode()
    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        from upstream_ehmam.model import normalize_waveforms

        padded, lengths = normalize_waveforms([wav.to(self.device)])
        field = self.geometry.field
        padded = F.pad(padded, (0, max(0, field - padded.shape[1])))
        hidden, frame_lengths = self.encoder.extract_features(padded, lengths.clamp(min=field))
        T = int(frame_lengths[0])
        return [h[0, :T].float().cpu() for h in hidden]
