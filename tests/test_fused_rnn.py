"""superb.fused_rnn: s3prl's RNNLayer (the ASR and SF heads' recurrent layer) on a CPU gives the packed layer's
outputs and gradients on the padded batch, keeps its parameters and state-dict keys, and falls back where the fused
path does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from superb.fused_rnn import PADDED, fuse_cpu_rnns, reverse_within_lengths


def test_reverse_within_lengths_leaves_padding_in_place():
    x = torch.arange(8.0).reshape(2, 4, 1)
    out = reverse_within_lengths(x, torch.tensor([4, 2]))
    assert out[:, :, 0].tolist() == [[3.0, 2.0, 1.0, 0.0], [5.0, 4.0, 6.0, 7.0]]


@pytest.mark.parametrize("kind", [torch.nn.LSTM, torch.nn.GRU])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_path_equals_the_packed_layer(kind, bidirectional):
    """Same outputs and parameter gradients as torch's packed layer, unsorted lengths, to float rounding."""
    torch.manual_seed(0)
    reference = kind(6, 5, bidirectional=bidirectional, batch_first=True)
    fused = copy.deepcopy(reference)
    fused.__class__ = PADDED[kind]
    x = torch.randn(4, 9, 6)
    lengths = torch.tensor([5, 9, 2, 7])

    def run(layer):
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, _ = layer(packed)
        padded, out_lengths = pad_packed_sequence(output, batch_first=True)
        padded.pow(2).sum().backward()
        return padded, out_lengths, {n: p.grad for n, p in layer.named_parameters()}

    want, want_lengths, want_grads = run(reference)
    got, got_lengths, got_grads = run(fused)
    assert torch.equal(got_lengths, want_lengths) and got.shape == want.shape
    assert (got - want).abs().max() < 1e-5
    assert all((got_grads[n] - want_grads[n]).abs().max() < 1e-4 for n in want_grads)
    assert fused.state_dict().keys() == reference.state_dict().keys()


def test_padded_path_falls_back_to_torch_for_a_plain_tensor_and_a_given_state():
    torch.manual_seed(0)
    layer = torch.nn.LSTM(3, 4, batch_first=True)
    layer.__class__ = PADDED[torch.nn.LSTM]
    x = torch.randn(2, 5, 3)
    output, (h, c) = layer(x)  # not packed: torch's own path, final state included
    assert output.shape == (2, 5, 4) and h.shape == (1, 2, 4) and c.shape == (1, 2, 4)


def test_s3prl_rnn_layer_gets_the_padded_layer_with_its_own_keys():
    from s3prl.downstream.asr.model import RNNLayer

    fuse_cpu_rnns()
    fuse_cpu_rnns()  # applying twice changes nothing
    layer = RNNLayer(8, "LSTM", True, 6, 0.0, False, 1, False)
    assert type(layer.layer) is PADDED[torch.nn.LSTM]
    plain = torch.nn.LSTM(8, 6, bidirectional=True)
    assert set(layer.state_dict()) == {f"layer.{k}" for k in plain.state_dict()}
    output, lengths = layer(torch.randn(3, 7, 8), torch.tensor([7, 3, 5]))
    assert output.shape == (3, 7, 12) and lengths.tolist() == [7, 3, 5]
