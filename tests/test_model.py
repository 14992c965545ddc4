"""Properties of the EH-MAM encoder (upstream_ehmam config/attention/model): lengths, padding invariance,
ALiBi, the student (visible-frames) path, layerdrop, initialisation and the exact Base parameter count."""

import copy

import pytest
import torch
import torch.nn.functional as F

from upstream_ehmam.attention import alibi_slopes, attention_bias
from upstream_ehmam.config import EncoderConfig, frames_for_samples
from upstream_ehmam.model import ContextEncoder, EHMAMEncoder, draw_layer_skips, init_weights, normalize_waveforms

ATOL = 1e-5


def tiny_config(**overrides) -> EncoderConfig:
    conv = [[32, 10, 5]] + [[32, 3, 2]] * 4 + [[32, 2, 2]] * 2
    base = dict(conv_layers=conv, embed_dim=64, num_layers=2, num_heads=4, ffn_dim=128, pos_conv_depth=2)
    return EncoderConfig(**{**base, **overrides})


def tiny_encoder(seed: int = 0, **overrides) -> EHMAMEncoder:
    torch.manual_seed(seed)
    return EHMAMEncoder(tiny_config(**overrides)).eval()


def random_waves(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) for n in lengths]


def no_dropout(**overrides) -> dict:
    return dict(dropout=0.0, attention_dropout=0.0, prenet_dropout=0.0, **overrides)


# ---------------------------------------------------------------- lengths


@pytest.mark.parametrize("n", [0, 1, 399, 400, 401, 719, 720, 800, 16000, 16079, 16080, 320000, 960000])
def test_frames_for_samples_formula(n):
    """Composed conv lengths equal floor((L - 80) / 320) for L >= 400 and 0 below; int and tensor agree."""
    expected = (n - 80) // 320 if n >= 400 else 0
    assert frames_for_samples(n) == expected
    assert EncoderConfig().frames_for_samples(torch.tensor([n])).tolist() == [expected]
    if n >= 400:
        assert abs(expected - round(n / 320)) < 5  # s3prl's TOLERABLE_SEQLEN_DIFF


def test_local_encoder_output_length_matches_formula():
    """The CNN really produces frames_for_samples(S) frames, e.g. 16000 -> 49, 320000 -> 999."""
    model = tiny_encoder()
    for n in (400, 401, 16000, 320000):
        with torch.no_grad():
            feats, lengths = model.local(torch.randn(1, n), torch.tensor([n]))
        assert feats.shape[1] == lengths.item() == (n - 80) // 320


# ---------------------------------------------------------------- padding invariance


def test_batched_equals_one_by_one():
    """A padded batch gives each utterance's one-by-one hidden states on valid frames; padded frames are 0."""
    model = tiny_encoder()
    waves = random_waves([8000, 400, 3217, 5000])
    with torch.no_grad():
        padded, lengths = normalize_waveforms(waves)
        batched, frame_lengths = model.extract_features(padded, lengths)
        assert len(batched) == model.config.num_layers + 1
        for b, w in enumerate(waves):
            single_in, single_len = normalize_waveforms([w])
            single, _ = model.extract_features(single_in, single_len)
            T = single[0].shape[1]
            assert frame_lengths[b].item() == T
            for layer, (hb, hs) in enumerate(zip(batched, single)):
                torch.testing.assert_close(hb[b, :T], hs[0], atol=ATOL, rtol=0, msg=f"layer {layer}")
                assert hb[b, T:].abs().sum().item() == 0


def test_zero_length_utterance_stays_finite():
    """An utterance shorter than the receptive field (0 frames) does not produce NaN in the batch."""
    model = tiny_encoder()
    with torch.no_grad():
        padded, lengths = normalize_waveforms(random_waves([4000, 300]))
        hidden, frame_lengths = model.extract_features(padded, lengths)
    assert frame_lengths.tolist() == [12, 0]
    assert all(torch.isfinite(h).all() for h in hidden)


def test_normalize_waveforms_per_utterance():
    """Each waveform becomes (x - mean) / sqrt(var + 1e-5) over its own samples, then zero-padded."""
    waves = [3 * torch.randn(1000) + 2, 0.1 * torch.randn(300) - 1]
    padded, lengths = normalize_waveforms(waves)
    assert padded.shape == (2, 1000) and lengths.tolist() == [1000, 300]
    for b, w in enumerate(waves):
        expected = (w - w.mean()) / (w.var(unbiased=False) + 1e-5).sqrt()
        torch.testing.assert_close(padded[b, : len(w)], expected, atol=1e-5, rtol=1e-5)
    assert abs(padded[0].var(unbiased=False).item() - 1) < 1e-3
    assert padded[1, 300:].abs().max().item() == 0


# ---------------------------------------------------------------- ALiBi


def test_alibi_slopes():
    """12 heads: 2^-1..2^-8 then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5; powers of two are geometric."""
    expected_12 = [2.0**-e for e in [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected_12), atol=0, rtol=1e-7)
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))


def test_attention_bias_values_and_padding():
    """bias[b,h,i,j] = -scale_h * |p_i - p_j|, -inf at padded keys; the row stride is SDPA-aligned."""
    scales = torch.tensor([0.5, 0.25])
    positions = torch.arange(5)[None]
    key_valid = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    bias = attention_bias(positions, key_valid, scales, torch.float32)
    assert bias.shape == (2, 2, 5, 5) and bias.stride(-2) % 8 == 0
    distance = (torch.arange(5)[:, None] - torch.arange(5)[None]).abs().float()
    torch.testing.assert_close(bias[0, 1], -0.25 * distance)
    assert torch.isinf(bias[1, :, :, 3:]).all() and torch.isfinite(bias[1, :, :, :3]).all()


def test_visible_bias_is_submatrix_of_full_bias():
    """The bias over visible frames uses original positions: it equals the full bias' sub-matrix."""
    scales = alibi_slopes(4)
    T = 20
    visible_idx = torch.tensor([[0, 2, 3, 7, 11, 19], [1, 4, 5, 6, 12, 13]])
    full = attention_bias(torch.arange(T)[None], torch.ones(2, T, dtype=torch.bool), scales, torch.float32)
    sub = attention_bias(visible_idx, torch.ones(2, 6, dtype=torch.bool), scales, torch.float32)
    for b in range(2):
        idx = visible_idx[b]
        torch.testing.assert_close(sub[b], full[b][:, idx][:, :, idx], atol=0, rtol=0)


def capture_attention_masks(monkeypatch) -> list:
    """Record the attn_mask of every SDPA call."""
    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append(attn_mask)
        return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


def test_student_attention_uses_original_positions(monkeypatch):
    """forward_visible's attention mask is the full path's mask restricted to the visible rows and columns."""
    model = tiny_encoder()
    seen = capture_attention_masks(monkeypatch)
    T = 16
    x = torch.randn(2, T, 64)
    lengths = torch.tensor([16, 13])
    mask = torch.zeros(2, T, dtype=torch.bool)
    mask[0, 3:8] = True
    mask[1, 9:14] = True
    visible_idx = torch.stack([(~m).nonzero()[:, 0] for m in mask])  # (2, 11)
    with torch.no_grad():
        model.context(x, lengths)
        full = seen[-1]
        model.context.forward_visible(x, mask, visible_idx, lengths, None)
        visible = seen[-1]
    assert visible.shape == (2, 4, 11, 11)
    for b in range(2):
        idx = visible_idx[b]
        torch.testing.assert_close(visible[b], full[b][:, idx][:, :, idx], atol=0, rtol=0)


def test_bias_in_compute_dtype_and_shared_by_blocks(monkeypatch):
    """Under bf16 autocast every block receives the same bf16 mask object (built once per forward)."""
    model = tiny_encoder(num_layers=3)
    seen = capture_attention_masks(monkeypatch)
    x = torch.randn(2, 10, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model.context(x, torch.tensor([10, 7]))
    assert len(seen) == 3 and all(m is seen[0] for m in seen)
    assert seen[0].dtype == torch.bfloat16


# ---------------------------------------------------------------- student path and layerdrop


def test_forward_visible_all_visible_equals_full_path():
    """With nothing masked and visible_idx = arange, the student path equals the full path (eval mode)."""
    model = tiny_encoder()
    x = torch.randn(2, 30, 64)
    lengths = torch.tensor([30, 22])
    mask = torch.zeros(2, 30, dtype=torch.bool)
    with torch.no_grad():
        full = model.context(x, lengths).hidden_states[-1]
        student = model.context.forward_visible(x, mask, torch.arange(30).expand(2, 30), lengths, None)
    torch.testing.assert_close(student[0], full[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(student[1, :22], full[1, :22], atol=ATOL, rtol=0)


def test_forward_visible_zeroes_masked_frames_and_keeps_positions():
    """Masked frames' content does not reach the student, and its output has one row per visible frame."""
    model = tiny_encoder()
    x = torch.randn(1, 25, 64)
    mask = torch.zeros(1, 25, dtype=torch.bool)
    mask[0, 5:10] = True
    visible_idx = (~mask[0]).nonzero().T  # (1, 20)
    lengths = torch.tensor([25])
    noisy = x.clone()
    noisy[0, 5:10] = 100 * torch.randn(5, 64)
    with torch.no_grad():
        out = model.context.forward_visible(x, mask, visible_idx, lengths, None)
        out_noisy = model.context.forward_visible(noisy, mask, visible_idx, lengths, None)
        out_unmasked = model.context.forward_visible(x, torch.zeros_like(mask), visible_idx, lengths, None)
    assert out.shape == (1, 20, 64)
    torch.testing.assert_close(out, out_noisy, atol=0, rtol=0)
    assert (out - out_unmasked).abs().max() > 1e-3  # the pos-conv saw zeros instead of the frames


def test_alibi_scale_receives_gradient_in_student_path():
    """The learned per-head ALiBi scale is trained through the student path."""
    model = tiny_encoder(**no_dropout(layerdrop=0.0)).train()
    x = torch.randn(2, 16, 64)
    out = model.context.forward_visible(
        x,
        torch.zeros(2, 16, dtype=torch.bool),
        torch.arange(16).expand(2, 16),
        torch.tensor([16, 16]),
        torch.Generator().manual_seed(0),
    )
    out.square().mean().backward()
    assert model.context.alibi_scale.grad is not None and model.context.alibi_scale.grad.abs().sum() > 0


def test_layerdrop_decisions_reproducible_from_generator():
    """Same generator seed -> same skip decisions; the draw uses only the given CPU generator."""
    a = draw_layer_skips(12, 0.5, torch.Generator().manual_seed(3))
    b = draw_layer_skips(12, 0.5, torch.Generator().manual_seed(3))
    torch.manual_seed(123)  # the global RNG must not matter
    c = draw_layer_skips(12, 0.5, torch.Generator().manual_seed(3))
    assert a == b == c and any(a) and not all(a)
    assert draw_layer_skips(12, 0.0, torch.Generator().manual_seed(3)) == [False] * 12


def test_layerdrop_skips_exactly_the_drawn_blocks_in_training():
    """Training-mode student output equals an eval model built from only the blocks the generator kept."""
    model = tiny_encoder(num_layers=4, **no_dropout(layerdrop=0.5))
    seed = next(s for s in range(100) if 0 < sum(draw_layer_skips(4, 0.5, torch.Generator().manual_seed(s))) < 4)
    skips = draw_layer_skips(4, 0.5, torch.Generator().manual_seed(seed))
    reference = copy.deepcopy(model.context)
    reference.blocks = torch.nn.ModuleList(b for b, s in zip(reference.blocks, skips) if not s)
    x = torch.randn(2, 12, 64)
    args = (x, torch.zeros(2, 12, dtype=torch.bool), torch.arange(12).expand(2, 12), torch.tensor([12, 12]))
    model.context.train()
    with torch.no_grad():
        dropped = model.context.forward_visible(*args, torch.Generator().manual_seed(seed))
        expected = reference.eval().forward_visible(*args, None)
        all_blocks = model.context.eval().forward_visible(*args, None)
    torch.testing.assert_close(dropped, expected, atol=ATOL, rtol=0)
    assert (dropped - all_blocks).abs().max() > 1e-3


def test_layerdrop_never_active_in_eval_or_full_path():
    """Eval-mode student path and the full path (even in training mode) never skip blocks."""
    model = tiny_encoder(num_layers=3, **no_dropout(layerdrop=0.9))
    x = torch.randn(1, 10, 64)
    lengths = torch.tensor([10])
    args = (x, torch.zeros(1, 10, dtype=torch.bool), torch.arange(10)[None], lengths)
    with torch.no_grad():
        eval_full = model.context(x, lengths).hidden_states
        outs = [model.context.forward_visible(*args, torch.Generator().manual_seed(s)) for s in range(5)]
        model.context.train()
        train_full = model.context(x, lengths).hidden_states
    assert len(train_full) == 4
    for o in outs:
        torch.testing.assert_close(o, eval_full[-1], atol=ATOL, rtol=0)
    for a, b in zip(train_full, eval_full):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_full_path_outputs_structure():
    """ContextOutput: L+1 hidden states, L FFN taps, and block outputs are LN2(h1 + ffn) (tap before residual)."""
    model = tiny_encoder()
    x = torch.randn(2, 9, 64)
    with torch.no_grad():
        out = model.context(x, torch.tensor([9, 9]))
    assert len(out.hidden_states) == 3 and len(out.ffn_outputs) == 2
    assert all(t.shape == (2, 9, 64) for t in out.hidden_states + out.ffn_outputs)
    # Post-LN: every block output is layer-normalised per frame; the FFN tap is not.
    for h in out.hidden_states[1:]:
        assert h.mean(-1).abs().max() < 1e-4
    assert out.ffn_outputs[0].mean(-1).abs().max() > 1e-4


# ---------------------------------------------------------------- init, size, truncation, config


def test_init_weights_follows_method():
    """Linear N(0, 0.02) with zero bias; LN 1/0; CNN Kaiming-normal; projection PyTorch default; scale 1."""
    model = tiny_encoder()
    block = model.context.blocks[0]
    assert abs(block.fc1.weight.std().item() - 0.02) < 0.002 and block.fc1.bias.abs().max() == 0
    assert block.norm1.weight.eq(1).all() and block.norm1.bias.eq(0).all()
    conv = model.local.convs[1]  # fan_in = 32 * 3
    assert abs(conv.weight.std().item() - (2 / 96) ** 0.5) < 0.02
    bound = 1 / 32**0.5  # PyTorch default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.local.proj.weight.abs().max() <= bound and model.local.proj.weight.std() > 0.1
    assert model.context.alibi_scale.eq(1).all()
    torch.manual_seed(1)
    lin = torch.nn.Linear(100, 100)
    init_weights(lin)
    assert abs(lin.weight.std().item() - 0.02) < 0.002


def test_base_parameter_count():
    """The Base encoder has exactly 93,163,532 parameters, split as in docs/design.md "Parameter counts"."""
    with torch.device("meta"):
        model = EHMAMEncoder(EncoderConfig())

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(model) == 93_163_532
    assert count(model.local.convs) + count(model.local.conv_norms) == 4_206_592
    assert count(model.local.proj_norm) + count(model.local.proj) == 395_008
    assert count(model.context.pos_conv) == 3_505_920
    assert count(model.context.blocks[0]) == 7_087_872


def test_truncate_layers():
    """truncate_layers(k) keeps the first k blocks: k+1 hidden states equal to the full model's first k+1."""
    model = tiny_encoder(num_layers=3)
    padded, lengths = normalize_waveforms(random_waves([3000]))
    with torch.no_grad():
        full, _ = model.extract_features(padded, lengths)
        model.truncate_layers(2)
        cut, _ = model.extract_features(padded, lengths)
    assert len(cut) == 3 and model.config.num_layers == 2
    for a, b in zip(cut, full[:3]):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    for bad in (0, 3, 1.5):
        with pytest.raises(ValueError, match="num_layers"):
            model.truncate_layers(bad)


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"foo": 1}, "model.foo: unknown key"),
        ({"num_heads": "12"}, "model.num_heads: expected int, found str"),
        ({"num_layers": 2.0}, "model.num_layers: expected int, found float"),
        ({"embed_dim": True}, "model.embed_dim: expected int, found bool"),
        ({"dropout": "0.1"}, "model.dropout: expected float, found str"),
        ({"num_heads": 5}, "model.num_heads: must divide"),
        ({"pos_conv_groups": 5}, "model.pos_conv_groups: must divide"),
        ({"attention_dropout": 1.0}, "model.attention_dropout: must be in"),
        ({"layerdrop": -0.1}, "model.layerdrop: must be in"),
        ({"ffn_dim": 0}, "model.ffn_dim: must be positive"),
        ({"pos_conv_kernel": 18}, "model.pos_conv_kernel: must be odd"),
        ({"conv_layers": [[512, 10]]}, "model.conv_layers: entry 0"),
        ({"conv_layers": []}, "model.conv_layers"),
        ({"layer_norm_eps": 0.0}, "model.layer_norm_eps: must be positive"),
    ],
)
def test_config_errors_name_the_key(overrides, key):
    """from_dict rejects unknown keys, wrong types and impossible values with '<where>.<key>: ...'."""
    with pytest.raises(ValueError, match=key.replace(".", r"\.", 1)):
        EncoderConfig.from_dict(overrides)


def test_config_round_trip_and_direct_validation():
    """to_dict is plain data and from_dict(to_dict()) is identical; direct construction also validates."""
    cfg = tiny_config(dropout=0)
    d = cfg.to_dict()
    assert isinstance(d["conv_layers"][0], list) and isinstance(d["dropout"], float)
    assert EncoderConfig.from_dict(d) == cfg
    assert EncoderConfig().downsample_rate == 320 and EncoderConfig().receptive_field == 400
    with pytest.raises(ValueError, match="num_heads"):
        EncoderConfig(num_heads=7)


def test_context_encoder_standalone_matches_encoder_context():
    """A ContextEncoder loaded from the encoder's context state gives the same outputs (teacher copy)."""
    model = tiny_encoder()
    teacher = ContextEncoder(model.config).eval()
    teacher.load_state_dict(model.context.state_dict())
    x = torch.randn(1, 8, 64)
    with torch.no_grad():
        a = model.context(x, torch.tensor([8])).hidden_states[-1]
        b = teacher(x, torch.tensor([8])).hidden_states[-1]
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_channels_last_convs_equal_the_plain_conv1d_layernorm_reference():
    """The CNN and the positional conv run as channels-last 2-D convs (no transpose copies); in float64 they equal
    the textbook (B, C, T) Conv1d -> LayerNorm over channels -> GELU, values and gradients."""
    from upstream_ehmam.model import LocalEncoder, PositionalConv

    cfg = tiny_config()
    torch.manual_seed(0)
    local, pos = LocalEncoder(cfg).double(), PositionalConv(cfg).double()
    wav = torch.randn(2, 6000, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6000, 4100])

    def local_reference(w):
        x = w[:, None, :]
        for conv, norm in zip(local.convs, local.conv_norms):
            x = F.conv1d(x, conv.weight, stride=conv.stride)
            x = F.gelu(F.layer_norm(x.transpose(1, 2), (x.shape[1],), norm.weight, norm.bias, norm.eps).transpose(1, 2))
        x = local.proj(local.proj_norm(x.transpose(1, 2)))
        frames = cfg.frames_for_samples(lengths)
        return x.masked_fill((torch.arange(x.shape[1])[None, :] >= frames[:, None])[..., None], 0.0)

    def pos_reference(x, valid):
        h = x.transpose(1, 2)
        for conv in pos.convs:
            h = conv(h.masked_fill(~valid[:, None, :], 0.0))
            h = F.gelu(F.layer_norm(h.transpose(1, 2), (h.shape[1],), eps=pos.eps).transpose(1, 2))
        return h.transpose(1, 2)

    features, frames = local(wav, lengths)
    torch.testing.assert_close(features, local_reference(wav), rtol=0, atol=1e-10)
    valid = torch.arange(features.shape[1])[None, :] < frames[:, None]
    out = pos(features, valid)
    reference = pos_reference(local_reference(wav), valid)
    torch.testing.assert_close(out, reference, rtol=0, atol=1e-10)
    grad_new = torch.autograd.grad(out.square().sum(), [wav, local.convs[0].weight, pos.convs[0].weight])
    grad_ref = torch.autograd.grad(reference.square().sum(), [wav, local.convs[0].weight, pos.convs[0].weight])
    for new, ref in zip(grad_new, grad_ref):
        torch.testing.assert_close(new, ref, rtol=1e-9, atol=1e-10)
