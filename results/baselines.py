"""Published SUPERB test-set numbers (public "paper" track), in SUPERB units, with their sources.

The values come from a per-upstream learning-rate sweep
on the real corpora, so they are comparable only to runs on the real SUPERB data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

LEADERBOARD_SOURCE = "SUPERB leaderboard data, superbbenchmark/superbbenchmark.github.io src/data/public.json"


@dataclass(frozen=True)
class PublishedScores:
    """One published upstream: test-set scores in SUPERB units (percent)."""

    name: str
    pr_per: float  # PER %, lower is better
    ks_acc: float  # accuracy %
    ic_acc: float
    sid_acc: float
    er_acc: float  # mean of the 5 IEMOCAP folds
    asr_wer_no_lm: float  # WER % on test-clean, no language model
    asr_wer_lm: float | None  # with the official LM; None where not published
    sf_f1: float  # slot-type F1 %
    sf_cer: float  # slot-value CER %
    source: str
    er_folds: tuple[float, ...] = field(default=())  # fold1..fold5 where published
    context_only: bool = False  # a Large model, shown for context, never in the default table


PUBLISHED: tuple[PublishedScores, ...] = (
    PublishedScores(
        "FBANK",
        82.01,
        41.38,
        9.65,
        20.06,
        48.24,
        23.18,
        15.21,
        69.64,
        52.94,
        source=LEADERBOARD_SOURCE + ' (row labelled "paper / Interspeech2021"; its KS/IC/SID/ER '
        "values look like a later re-run of the printed paper table)",
    ),
    PublishedScores(
        "wav2vec 2.0 Base",
        5.74,
        96.23,
        92.35,
        75.18,
        63.43,
        6.43,
        4.79,
        88.30,
        24.77,
        source=LEADERBOARD_SOURCE + ' ("paper / Interspeech2021"); matches WavLM paper Table 3',
        er_folds=(62.86, 68.62, 60.99, 63.53, 61.16),
    ),
    PublishedScores(
        "HuBERT Base",
        5.41,
        96.30,
        98.34,
        81.42,
        64.92,
        6.42,
        4.79,
        88.53,
        25.20,
        source=LEADERBOARD_SOURCE + ' ("paper / Interspeech2021"); SID agrees with s3prl issue '
        "#268 (lr 1e-1); matches WavLM paper Table 3",
        er_folds=(62.40, 66.57, 65.25, 65.18, 65.19),
    ),
    PublishedScores(
        "WavLM Base",
        4.84,
        96.79,
        98.63,
        84.51,
        65.94,
        6.21,
        4.59,
        89.38,
        22.86,
        source=LEADERBOARD_SOURCE + " (Microsoft submission, 2021-11/12); PR agrees with s3prl "
        "issue #498; matches WavLM paper Table 3",
        er_folds=(65.99, 66.76, 64.90, 66.44, 65.59),
    ),
    PublishedScores(
        "WavLM Base+",
        3.92,
        97.37,
        99.00,
        89.42,
        68.65,
        5.59,
        4.02,
        90.58,
        21.20,
        source=LEADERBOARD_SOURCE + " (Microsoft submission, 2021-11/12); the leaderboard row, "
        "which differs from the WavLM paper's Table 3 row (kept in PUBLISHED as context)",
        er_folds=(69.49, 69.40, 66.38, 70.03, 67.93),
    ),
    PublishedScores(
        "WavLM Base+ (WavLM paper Table 3)",
        4.07,
        96.69,
        99.16,
        86.84,
        67.98,
        5.64,
        None,
        89.73,
        21.54,
        source="WavLM paper Table 3 (microsoft/unilm wavlm/SUPERB_Results.png)",
        context_only=True,
    ),
    PublishedScores(
        "wav2vec 2.0 Large",
        4.75,
        96.66,
        95.28,
        86.14,
        65.64,
        3.75,
        3.10,
        87.11,
        27.31,
        source=LEADERBOARD_SOURCE,
        context_only=True,
    ),
    PublishedScores(
        "HuBERT Large",
        3.53,
        95.29,
        98.76,
        90.33,
        67.62,
        3.62,
        2.94,
        89.81,
        21.76,
        source=LEADERBOARD_SOURCE,
        context_only=True,
    ),
    PublishedScores(
        "WavLM Large",
        3.06,
        97.86,
        99.31,
        95.49,
        70.62,
        3.44,
        2.95,
        92.21,
        18.36,
        source=LEADERBOARD_SOURCE,
        context_only=True,
    ),
)

# The Base-size references a Base-size model like ours is set beside.
DEFAULT_BASELINES: tuple[PublishedScores, ...] = tuple(p for p in PUBLISHED if not p.context_only)

CAVEATS: tuple[str, ...] = (
    "Published numbers come from a per-upstream learning-rate sweep (log scale, 1e-1 ... 1e-7); "
    "a single default-lr run can be several points off (s3prl #498: WavLM Base PR 5.5 at the "
    "default lr vs 4.84 reported).",
    "ASR is shown without a language model, which is what the s3prl runner decodes by default.",
    "No official SUPERB numbers exist for data2vec or data2vec 2.0.",
)
