"""CTC fine-tuning parts: schedule, slot split, masks, Viterbi, letters, ARPA model, LM decoding, config errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from finetune.arpa import BOS, UNK, BackoffModel
from finetune.config import load_config
from finetune.data import read_subset
from finetune.letters import LETTERS, encode, indices_to_words, letters_to_words, symbols_of, words_to_letters
from finetune.masking import expected_masked_fraction, span_mask
from finetune.model import CTCModel, ctc_loss_sum, draw_masks, greedy_indices
from finetune.schedule import micro_batch_slots, tri_stage_lr_at
from upstream_ehmam.config import EncoderConfig
from upstream_ehmam.model import random_init_encoder

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = symbols_of(LETTERS)
TINY = dict(
    frontend="mel",
    embed_dim=32,
    num_layers=2,
    num_heads=2,
    ffn_dim=64,
    pos_conv_depth=1,
    pos_conv_kernel=5,
    pos_conv_groups=4,
    layerdrop=0.0,
    dropout=0.0,
    attention_dropout=0.0,
    prenet_dropout=0.0,
)


def test_tri_stage_lr_at_every_phase_boundary():
    """Warm-up from 0.01 lr, the peak held from int(0.1 U) to int(0.5 U), exponential decay to 0.05 lr at int(U)."""
    lr, U = 1e-3, 1000
    at = lambda u: tri_stage_lr_at(u, lr, U)  # noqa: E731
    assert at(0) == pytest.approx(0.01 * lr)
    assert at(50) == pytest.approx(0.01 * lr + 0.99 * lr * 0.5)
    assert at(99) < lr and at(100) == lr and at(499) == lr
    assert at(500) == pytest.approx(lr)  # decay step 0
    assert at(750) == pytest.approx(lr * math.exp(math.log(0.05) * 0.5))
    assert at(1000) == pytest.approx(0.05 * lr) and at(5000) == pytest.approx(0.05 * lr)
    assert all(at(u + 1) < at(u) for u in range(500, 1000))


@pytest.mark.parametrize("micro_batches", [1, 7, 8])
def test_micro_batch_slots_keep_the_global_batch_for_one_and_two_processes(micro_batches):
    """Over the ranks every slot is processed exactly once, in ceil(micro_batches / W) accumulation steps."""
    for world in (1, 2, 3):
        per_rank = [micro_batch_slots(micro_batches, world, r) for r in range(world)]
        assert all(len(s) == math.ceil(micro_batches / world) for s in per_rank)
        slots = sorted(s for rank in per_rank for s in rank if s is not None)
        assert slots == list(range(micro_batches))
    assert micro_batch_slots(8, 1, 0) == list(range(8))


@pytest.mark.parametrize("n, prob, span", [(200, 0.65, 10), (37, 0.65, 10), (128, 0.25, 16), (768, 0.5, 64)])
def test_span_mask_fraction_matches_its_expectation(n, prob, span):
    """The mean masked share over 3,000 seeded rows is the exact expectation within 0.01 (about 5 standard errors)."""
    generator = torch.Generator().manual_seed(0)
    mask = span_mask([n] * 3000, n, prob, span, generator)
    assert float(mask.float().mean()) == pytest.approx(expected_masked_fraction(n, prob, span), abs=0.01)
    if (n, prob, span) == (200, 0.65, 10):
        assert 0.45 < expected_masked_fraction(n, prob, span) < 0.51  # the recipe's "about 48 %"


def test_span_mask_stays_inside_each_row_and_is_seeded():
    """Row b masks nothing at positions >= lengths[b]; the same generator seed gives the same mask."""
    a = span_mask([30, 12, 5], 30, 0.65, 10, torch.Generator().manual_seed(3))
    b = span_mask([30, 12, 5], 30, 0.65, 10, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not a[1, 12:].any() and not a[2].any() and a[0].any()


def test_evaluation_applies_no_mask_and_equals_the_full_sequence_encoder():
    """In eval mode, without masks, the model's last block equals ContextEncoder.forward's (padding included)."""
    encoder = random_init_encoder(EncoderConfig(**TINY), seed=0)
    model = CTCModel(encoder, len(SYMBOLS)).eval()
    wav = torch.randn(2, 16000)
    lengths = torch.tensor([16000, 9000])
    captured = {}
    model.head.register_forward_hook(lambda m, inp, out: captured.setdefault("h", inp[0]))
    with torch.no_grad():
        _, frames = model(wav, lengths)
        features, _ = encoder.local(wav, lengths)
        reference = encoder.context(features, frames).hidden_states[-1]
    for b, n in enumerate(frames.tolist()):
        torch.testing.assert_close(captured["h"][b, :n], reference[b, :n], rtol=1e-5, atol=1e-5)


def test_draw_masks_zeroes_whole_channels_in_training():
    """Channel masks are one (B, D) draw: a masked channel is masked on every frame of its row."""
    masks = draw_masks(
        [40, 20],
        40,
        32,
        type("M", (), dict(mask_prob=0.65, span_length=10, channel_prob=0.5, channel_length=8))(),
        torch.Generator().manual_seed(1),
    )
    assert masks.time.shape == (2, 40) and masks.channels.shape == (2, 32) and masks.channels.any()
    assert not masks.time[1, 20:].any()


def test_viterbi_decodes_a_hand_made_emission():
    """Best path C C <s> A T T | <s> | A -> 'CAT A': repeats merged, blanks removed, '|' splits words."""
    path = ["C", "C", "<s>", "A", "T", "T", "|", "<s>", "|", "A", "<pad>"]
    emission = torch.full((1, len(path), len(SYMBOLS)), -10.0)
    for t, symbol in enumerate(path):
        emission[0, t, SYMBOLS.index(symbol)] = 0.0
    best = greedy_indices(emission, torch.tensor([len(path) - 1]))  # the last frame is padding
    assert indices_to_words(best[0], SYMBOLS) == "CAT A"


def test_letters_and_words_round_trip_and_reject_unknown_characters():
    """.wrd -> .ltr -> .wrd is the identity; a digit or lower-case letter is an error naming where it was."""
    text = "THE CAT'S HAT ZOO"
    letters = words_to_letters(text)
    assert letters == "T H E | C A T ' S | H A T | Z O O |" and letters_to_words(letters) == text
    assert indices_to_words(encode(letters, SYMBOLS), SYMBOLS) == text
    with pytest.raises(ValueError, match="train.wrd:3.*'7'"):
        words_to_letters("ROOM 7", where="train.wrd:3")
    with pytest.raises(ValueError, match="x.ltr:2.*'@'"):
        encode("A @ |", SYMBOLS, where="x.ltr:2")


def test_ctc_loss_falls_on_a_tiny_model():
    """Twenty Adam steps on one batch at least halve the per-sentence CTC loss of a tiny random encoder."""
    torch.manual_seed(0)
    model = CTCModel(random_init_encoder(EncoderConfig(**TINY), seed=0), len(SYMBOLS)).train()
    wav, lengths = torch.randn(2, 24000), torch.tensor([24000, 20000])
    targets = [encode(words_to_letters(t), SYMBOLS) for t in ("HI", "OK")]
    flat, target_lengths = torch.tensor(sum(targets, [])), torch.tensor([len(t) for t in targets])
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(20):
        logits, frames = model(wav, lengths)
        loss = ctc_loss_sum(logits, frames, flat, target_lengths) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_arpa_model_normalises_and_holds_unk(tmp_path):
    """Every history's distribution over the vocabulary (with </s> and <unk>) sums to 1; the file lists <unk>."""
    sentences = [s.split() for s in ("THE CAT SAT", "THE DOG SAT", "A CAT RAN", "THE CAT RAN", "A DOG SAT DOWN")]
    model = BackoffModel(sentences, order=3)
    vocabulary = [w for w in model.vocabulary() if w != BOS]
    histories = [()] + [g for probs in model.probs[:2] for g in probs if "</s>" not in g and g != (UNK,)]
    for history in histories:
        assert sum(model.prob(w, history) for w in vocabulary) == pytest.approx(1.0, abs=1e-9), history
    text = model.arpa()
    assert "\t<unk>" in text and "ngram 3=" in text and text.rstrip().endswith("\\end\\")
    assert model.prob("CAT", ("THE",)) > model.prob("DOG", ("THE",)) > 0


def test_lm_decoding_prefers_the_in_vocabulary_word(tmp_path):
    """An emission whose best path spells CAX (not a word) decodes to CAT with a lexicon and a toy ARPA model."""
    pytest.importorskip("flashlight.lib.text")
    from finetune.lm_decoding import LMSettings, build_decoder, lm_transcripts

    (tmp_path / "lm.arpa").write_text(BackoffModel([["CAT"], ["CAT", "SAT"], ["DOG"]], order=2).arpa())
    (tmp_path / "lexicon.txt").write_text("".join(f"{w}\t{words_to_letters(w)}\n" for w in ("CAT", "SAT", "DOG")))
    path = ["C", "A", "X", "|"]
    emission = torch.full((len(path), len(SYMBOLS)), -8.0)
    for t, symbol in enumerate(path):
        emission[t, SYMBOLS.index(symbol)] = -0.1
    emission[2, SYMBOLS.index("T")] = -1.5  # T is the runner-up of the third frame
    emission = torch.log_softmax(emission, dim=-1)
    assert indices_to_words(greedy_indices(emission[None], torch.tensor([4]))[0], SYMBOLS) == "CAX"
    decoder = build_decoder(LMSettings(tmp_path / "lm.arpa", tmp_path / "lexicon.txt", beam=50), SYMBOLS)
    assert lm_transcripts(decoder, [emission]) == ["CAT"]


def test_config_errors_name_the_key_and_floats_accept_exponents(tmp_path):
    """An unknown key, a bad value and a section of pretraining only are errors naming them; '5e-4' is a float."""
    base = ROOT / "finetune" / "base_10m.yaml"
    assert load_config(base, ["optim.lr=5e-4"]).optim.lr == 5e-4
    with pytest.raises(ValueError, match="optim.learning_rate"):
        load_config(base, ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="mask.mask_prob"):
        load_config(base, ["mask.mask_prob=1.5"])
    with pytest.raises(ValueError, match="heads"):
        load_config(base, ["heads.depth=2"])


def test_recipe_configs_hold_the_recipe_values():
    """base_{10m,1h,10h,100h}.yaml: lr, updates, freeze, channel mask, layerdrop of the published recipe."""
    expected = {
        "10m": (5e-5, 13000, 10000, 0.25, 0.1),
        "1h": (5e-5, 13000, 10000, 0.25, 0.1),
        "10h": (5e-5, 20000, 10000, 0.5, 0.05),
        "100h": (3e-5, 80000, 0, 0.5, 0.1),
    }
    for split, values in expected.items():
        c = load_config(ROOT / "finetune" / f"base_{split}.yaml")
        assert (c.optim.lr, c.optim.max_steps, c.model.freeze_updates, c.mask.channel_prob, c.model.layerdrop) == values
        assert (c.mask.mask_prob, c.mask.span_length, c.mask.channel_length, c.data.train_subset) == (
            0.65,
            10,
            64,
            split,
        )
        assert c.optim.micro_batches * c.data.max_batch_samples == 25_600_000  # 1,600 s per update


def test_missing_manifest_and_label_mismatch_name_the_file(tmp_path):
    """A missing .tsv, a missing .ltr and a .ltr with the wrong line count are errors naming that file."""
    with pytest.raises(FileNotFoundError, match="10m.tsv"):
        read_subset(tmp_path, "10m", SYMBOLS)
    (tmp_path / "10m.tsv").write_text(f"{tmp_path}\na.flac\t16000\nb.flac\t16000\n")
    with pytest.raises(FileNotFoundError, match="10m.ltr"):
        read_subset(tmp_path, "10m", SYMBOLS)
    (tmp_path / "10m.ltr").write_text("A |\n")
    with pytest.raises(ValueError, match="10m.ltr"):
        read_subset(tmp_path, "10m", SYMBOLS)
    (tmp_path / "10m.ltr").write_text("A |\nB 1 |\n")
    with pytest.raises(ValueError, match="10m.ltr:2"):
        read_subset(tmp_path, "10m", SYMBOLS)


def test_word_and_letter_error_rates_on_hand_counted_cases():
    from finetune.evaluate import word_error_rate

    rates = word_error_rate(["THE CAT", "A DOG"], ["THE CAT SAT", "A DOG"])
    assert (rates["errors"], rates["words"], rates["sentences"]) == (1, 5, 2)
    assert rates["wer"] == pytest.approx(20.0)
    assert rates["ler"] == pytest.approx(100.0 * 4 / 16)  # " SAT" missing out of 11 + 5 letters and spaces
    merged = word_error_rate(["THECAT"], ["THE  CAT"])  # a lost word boundary: two word edits, one letter edit
    assert merged["wer"] == pytest.approx(100.0) and merged["ler"] == pytest.approx(100.0 / 7)
