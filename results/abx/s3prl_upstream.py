"""Any s3prl upstream as an ABX representation (`python -m results.abx --upstream NAME`)."""

from __future__ import annotations

import torch

from measure.abx.items import FrameGeometry
from superb.compat import apply_compat

S3PRL_FIELD = 400  # s3prl upstreams of 16 kHz speech: 25 ms windows (fbank, wav2vec 2.0-style CNNs)


class S3prlUpstream:
    """Every hidden state of an s3prl upstream (`-u NAME` of run_downstream.py), e.g. fbank or a local
    checkpoint's upstream; its frame rate is the upstream's own downsample rate."""

    def __init__(self, name: str, ckpt: str | None = None, device: torch.device | str = "cpu"):
        apply_compat()
        import s3prl.hub as hub

        if not hasattr(hub, name):
            raise ValueError(f"--upstream {name}: not an s3prl upstream (s3prl.hub has no {name!r})")
        kwargs = {"ckpt": ckpt} if ckpt else {}
        self.model = getattr(hub, name)(**kwargs).eval().to(device)
        self.device = torch.device(device)
        self.name = f"s3prl {name}"
        self.geometry = FrameGeometry(int(self.model.get_downsample_rates("hidden_states")), S3PRL_FIELD)

    @torch.inference_mode()
    def layers(self, wav: torch.Tensor) -> list[torch.Tensor]:
        out = self.model([wav.to(self.device)])
        return [h[0].float().cpu() for h in out["hidden_states"]]
