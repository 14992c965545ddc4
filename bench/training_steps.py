"""The training steps the benches time: EHMAMStep, one pretraining update as pretrain/train.py runs it, and HFStep,
a HF transformers Wav2Vec2Model / Data2VecAudioModel training step of the same widths; and the bench's config
loading (tiny, base or a YAML path, with clone_batch, seed and overrides)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, ContextManager

import torch

from bench.common import autocast_for
from pretrain.config import PretrainConfig, load_config
from pretrain.ehmam import EHMAMPretrainModel, StepOutput
from pretrain.step import LAYERDROP_STREAM, train_step
from trainkit.runtime import Runtime, derive_seed
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import draw_layer_skips

ROOT = Path(__file__).resolve().parent.parent

CONFIGS = {"tiny": ROOT / "pretrain" / "tiny.yaml", "base": ROOT / "pretrain" / "ehmam.yaml"}
HF_KINDS = ("wav2vec2", "data2vec-audio")


class EHMAMStep:
    """One pretraining update exactly as pretrain/train.py's loop runs it in one process with grad_accum 1: both
    call pretrain.step.train_step; only the loop around it (data loading, logging, checkpoints, DDP) is left out.

    `phase(name)` is entered around each part, so a profiler can label them (bench/profile_step.py).
    """

    def __init__(
        self, config: PretrainConfig, device: torch.device, autocast_dtype: torch.dtype | None, start_update: int = 0
    ) -> None:
        if config.optim.grad_accum != 1:
            raise ValueError(
                f"optim.grad_accum: the bench times one micro-batch per update, got {config.optim.grad_accum}"
            )
        self.config = config
        self.device = device
        self.runtime = Runtime(device, rank=0, world_size=1, autocast_dtype=autocast_dtype)
        torch.manual_seed(config.run.seed)  # the initial weights train() builds
        self.model = EHMAMPretrainModel(config).to(device)
        if config.run.compile_blocks:
            self.model.compile_blocks()
        optim = config.optim
        self.optimizer = torch.optim.AdamW(
            self.model.optimizer_groups(optim.weight_decay),
            lr=optim.lr,
            betas=tuple(optim.betas),
            eps=optim.eps,
            fused=device.type == "cuda",
        )
        self.update = start_update  # optimiser updates done; schedules and seeds derive from it
        self.epoch = 1
        self.skipped = 0
        self.model.train()

    def __call__(
        self,
        wav: torch.Tensor,
        wav_lengths: torch.Tensor,
        positions: torch.Tensor,
        phase: Callable[[str], ContextManager] = contextlib.nullcontext,
    ) -> StepOutput:
        """wav (B, S) and wav_lengths (B,) on the host (pinned for a GPU), positions (B,) their places in the
        global batch -> the forward's StepOutput."""
        batch = {"wav": wav, "wav_lengths": wav_lengths, "position": positions}
        result = train_step(
            self.model, self.optimizer, [batch], self.update, self.epoch, self.config, self.runtime, phase=phase
        )
        if result.nonfinite:
            self.skipped += 1
        else:
            self.update += 1
        return result.out

    def next_update_without_layerdrop(self) -> int:
        """The first update >= the current one whose layerdrop draw skips no block (for FLOP counts)."""
        blocks, prob = self.config.model.num_layers, self.config.model.layerdrop
        update = self.update
        while any(
            draw_layer_skips(
                blocks,
                prob,
                torch.Generator().manual_seed(derive_seed(self.config.run.seed, update, 0, LAYERDROP_STREAM)),
            )
        ):
            update += 1
        return update


class HFStep:
    """A HF transformers Wav2Vec2Model / Data2VecAudioModel training step: forward (SDPA, its own SpecAugment and
    layerdrop in train mode) -> loss = mean(last_hidden_state^2) -> backward -> AdamW step. Random init from the
    config class defaults with our encoder's widths, depth and CNN; layerdrop set to ours."""

    def __init__(
        self,
        kind: str,
        encoder: EncoderConfig,
        device: torch.device,
        autocast_dtype: torch.dtype | None,
        seed: int,
        lr: float,
    ) -> None:
        from measure.torchaudio_import import import_torchaudio

        try:
            import_torchaudio()  # transformers imports torchaudio, whose C++ extension may not load here
        except ModuleNotFoundError:
            pass  # no torchaudio at all: transformers does without it
        import transformers

        if kind not in HF_KINDS:
            raise ValueError(f"HF model kind must be one of {HF_KINDS}, got {kind!r}")
        config_class, model_class = (
            (transformers.Wav2Vec2Config, transformers.Wav2Vec2Model)
            if kind == "wav2vec2"
            else (transformers.Data2VecAudioConfig, transformers.Data2VecAudioModel)
        )
        hf_config = config_class(
            hidden_size=encoder.embed_dim,
            num_hidden_layers=encoder.num_layers,
            num_attention_heads=encoder.num_heads,
            intermediate_size=encoder.ffn_dim,
            conv_dim=tuple(c for c, _, _ in encoder.conv_layers),
            conv_kernel=tuple(k for _, k, _ in encoder.conv_layers),
            conv_stride=tuple(s for _, _, s in encoder.conv_layers),
            layerdrop=encoder.layerdrop,
        )
        torch.manual_seed(seed)
        self.model = model_class._from_config(hf_config, attn_implementation="sdpa").to(device).train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, fused=device.type == "cuda")
        self.device = device
        self.autocast_dtype = autocast_dtype

    def __call__(self, wav: torch.Tensor) -> torch.Tensor:
        wav_device = wav.to(self.device, non_blocking=True)
        with autocast_for(self.device, self.autocast_dtype):
            hidden = self.model(wav_device).last_hidden_state  # (B, T, D)
            loss = hidden.float().pow(2).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


def load_bench_config(name: str, clones: int, seed: int, overrides: list[str]) -> PretrainConfig:
    path = CONFIGS.get(name, Path(name))
    return load_config(path, [f"mask.clone_batch={clones}", f"run.seed={seed}", "optim.grad_accum=1", *overrides])
