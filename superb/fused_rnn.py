"""The recurrent layer of s3prl's ASR and SF heads (`s3prl.downstream.asr.model.RNNLayer`) on a CPU, with torch's
fused kernel instead of its per-step path.

RNNLayer packs its batch before the LSTM. On a CPU torch has no fused kernel for packed input: it steps through time
with small ops, and the backward of each step writes a zero gradient of the whole sequence and adds it up, so an
update costs time quadratic in the utterance length (in a profile of 40 SF updates, `aten::fill_` and `aten::add_`
took 45 % of the CPU time). Here the same layer runs on the padded batch, one direction at a time: forward as it
is, backward on each utterance reversed within its own length, so no direction ever reads padding and every output
frame is what the packed layer computes (to float rounding: the fused kernel sums in another order). On CUDA, or for
anything but one layer without projections, the layer runs as torch's own.

Only RNNLayer's recurrent module is changed (its class, not its parameters or state-dict keys), because RNNLayer
discards the final state, which this path does not compute for utterances shorter than the batch.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

_MARK = "__superb_fused_rnn__"


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, C) with each row's first lengths[b] frames in reverse order; the padding after them stays in place."""
    steps = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    lengths = lengths.to(x.device).unsqueeze(1)
    source = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))


@functools.lru_cache(maxsize=None)
def _one_direction(kind: type, input_size: int, hidden_size: int, bias: bool) -> nn.Module:
    """A parameterless (meta) one-direction layer of `kind` to call with the real layer's weights."""
    return kind(input_size, hidden_size, bias=bias, batch_first=True, device="meta")


def _weights(rnn: nn.RNNBase, suffix: str) -> dict[str, torch.Tensor]:
    names = ["weight_ih_l0", "weight_hh_l0"] + (["bias_ih_l0", "bias_hh_l0"] if rnn.bias else [])
    return {name: getattr(rnn, name + suffix) for name in names}


def run_padded(rnn: nn.RNNBase, packed: PackedSequence) -> PackedSequence:
    """`rnn`'s output for `packed`, computed on the padded batch with the fused kernel, packed the same way."""
    padded, lengths = pad_packed_sequence(packed, batch_first=True)
    layer = _one_direction(type(rnn).__mro__[1], rnn.input_size, rnn.hidden_size, rnn.bias)
    outputs = [torch.func.functional_call(layer, _weights(rnn, ""), (padded,))[0]]
    if rnn.bidirectional:
        backward = torch.func.functional_call(
            layer, _weights(rnn, "_reverse"), (reverse_within_lengths(padded, lengths),)
        )
        outputs.append(reverse_within_lengths(backward[0], lengths))
    return pack_padded_sequence(torch.cat(outputs, dim=-1), lengths, batch_first=True, enforce_sorted=False)


def _uses_fused_path(rnn: nn.RNNBase, input: object) -> bool:
    return (
        isinstance(input, PackedSequence)
        and input.data.device.type == "cpu"
        and rnn.num_layers == 1
        and getattr(rnn, "proj_size", 0) == 0
    )


class PaddedLSTM(nn.LSTM):
    """nn.LSTM whose packed CPU input runs on the padded batch; returns (output, None): no final state."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's signature
        if hx is None and _uses_fused_path(self, input):
            return run_padded(self, input), None
        return super().forward(input, hx)


class PaddedGRU(nn.GRU):
    """nn.GRU whose packed CPU input runs on the padded batch; returns (output, None): no final state."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.GRU's signature
        if hx is None and _uses_fused_path(self, input):
            return run_padded(self, input), None
        return super().forward(input, hx)


PADDED = {nn.LSTM: PaddedLSTM, nn.GRU: PaddedGRU}


def fuse_cpu_rnns() -> None:
    """Give every RNNLayer built from now on a PaddedLSTM / PaddedGRU (same parameters and state-dict keys)."""
    from s3prl.downstream.asr.model import RNNLayer

    if getattr(RNNLayer.__init__, _MARK, False):
        return
    original = RNNLayer.__init__

    @functools.wraps(original)
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        padded = PADDED.get(type(self.layer))
        if padded is not None:
            self.layer.__class__ = padded

    setattr(init, _MARK, True)
    RNNLayer.__init__ = init
