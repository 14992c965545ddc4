"""Tests for pretrain/heads.py: sizes, residual structure, dropout draws, mask tokens."""

import math

import pytest
import torch

from pretrain.heads import ConvDecoder, LossPredictor, insert_mask_tokens

SMALL = dict(embed_dim=32, decoder_dim=16, kernel_size=7, groups=4, depth=4, input_dropout=0.1)


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


def test_base_head_parameter_counts_and_shapes():
    """Base heads have the docs/design.md "Parameter counts" sizes (619,776 and 620,544) and map (B, T, 768) to
    (B, T, 768) / (B, T)."""
    decoder, predictor = ConvDecoder(), LossPredictor()
    assert _n_params(decoder) == 619_776
    assert _n_params(predictor) == 620_544
    x = torch.randn(2, 13, 768)
    assert decoder(x).shape == (2, 13, 768)
    assert predictor(x).shape == (2, 13)


def test_residual_only_where_widths_match():
    """Block 1 (embed -> dec) has no residual; blocks 2-4 do: zeroing their convs turns them into identities."""
    torch.manual_seed(0)
    decoder = ConvDecoder(**SMALL).eval()
    assert [b.residual for b in decoder.stack.blocks] == [False, True, True, True]
    x = torch.randn(2, 10, 32)
    first = decoder.stack.blocks[0](x.transpose(1, 2)).transpose(1, 2)  # (B, T, dec)
    with torch.no_grad():
        for block in decoder.stack.blocks[1:]:  # zero conv -> LayerNorm(0) = 0 -> GELU(0) = 0 -> x + 0
            block.conv.weight.zero_()
            block.conv.bias.zero_()
    torch.testing.assert_close(decoder(x), decoder.proj(first))
    with torch.no_grad():  # no residual around block 1: zeroing it leaves only the output bias
        decoder.stack.blocks[0].conv.weight.zero_()
        decoder.stack.blocks[0].conv.bias.zero_()
    torch.testing.assert_close(decoder(x), decoder.proj.bias.expand(2, 10, 32))


def test_predictor_is_mean_over_output_channels():
    """The predicted per-frame loss is the mean of the 768 (here 32) outputs of LayerNorm -> Linear."""
    torch.manual_seed(1)
    predictor = LossPredictor(**SMALL).eval()
    x = torch.randn(3, 8, 32)
    full = predictor.proj(predictor.norm(predictor.stack(x)))  # (B, T, D)
    torch.testing.assert_close(predictor(x), full.mean(dim=-1))


def test_default_init_of_output_layers():
    """reset_parameters restores the default output Linear init (uniform within 1/sqrt(fan_in)) after a BERT init."""
    for head in (ConvDecoder(), LossPredictor()):
        torch.nn.init.normal_(head.proj.weight, std=0.02)
        torch.nn.init.zeros_(head.proj.bias)
        head.reset_parameters()
        bound = 1 / math.sqrt(384)
        assert head.proj.weight.abs().max() <= bound and head.proj.weight.std() > 0.8 * bound / math.sqrt(3)
        assert head.proj.bias.abs().max() > 0
    predictor = LossPredictor()
    assert torch.equal(predictor.norm.weight, torch.ones(384)) and torch.equal(predictor.norm.bias, torch.zeros(384))


def _first_conv_inputs(head, x):
    seen = []
    handle = head.stack.blocks[0].conv.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    head(x)
    handle.remove()
    return seen[0].transpose(1, 2)  # (B, T, D) after the head's own input dropout


def test_heads_draw_independent_dropout_and_leave_input_untouched():
    """In training each head drops out its own copy of the shared input; in eval there is no dropout and no noise."""
    torch.manual_seed(2)
    decoder, predictor = ConvDecoder(**SMALL).train(), LossPredictor(**SMALL).train()
    x = torch.ones(4, 50, 32)
    dec_in, pred_in = _first_conv_inputs(decoder, x), _first_conv_inputs(predictor, x)
    assert torch.equal(x, torch.ones_like(x)), "dropout must be out of place"
    dec_drop, pred_drop = dec_in == 0, pred_in == 0
    for dropped in (dec_drop, pred_drop):
        assert abs(dropped.float().mean().item() - 0.1) < 0.02
    assert not torch.equal(dec_drop, pred_drop), "the two heads must use independent dropout draws"
    assert torch.allclose(dec_in[~dec_drop], torch.full_like(dec_in[~dec_drop], 1 / 0.9))
    decoder.eval(), predictor.eval()
    assert torch.equal(_first_conv_inputs(decoder, x), x)
    assert torch.equal(decoder(x), decoder(x)) and torch.equal(predictor(x), predictor(x))


def test_insert_mask_tokens_places_rows_and_noise():
    """Visible rows land exactly at their positions; the other frames are N(0, std^2) noise from the generator."""
    g = torch.Generator().manual_seed(3)
    R, T, D, std = 3, 40, 64, 0.01
    visible_idx = torch.stack([torch.randperm(T, generator=g)[:25].sort().values for _ in range(R)])  # (R, 25)
    visible = torch.randn(R, 25, 64, generator=g).requires_grad_(True)
    full = insert_mask_tokens(visible, visible_idx, T, std, torch.Generator().manual_seed(4))
    assert full.shape == (R, T, D)
    is_masked = torch.ones(R, T, dtype=torch.bool).scatter_(1, visible_idx, False)
    for r in range(R):
        assert torch.equal(full[r, visible_idx[r]], visible[r])
    noise = full[is_masked]
    assert noise.std().item() == pytest.approx(std, rel=0.05) and abs(noise.mean().item()) < 1e-3
    again = insert_mask_tokens(visible, visible_idx, T, std, torch.Generator().manual_seed(4))
    assert torch.equal(full, again), "the noise is drawn from the given generator"
    full.sum().backward()
    assert torch.equal(visible.grad, torch.ones_like(visible)), "gradient flows back to the visible frames"
