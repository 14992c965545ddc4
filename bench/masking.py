"""What the easy-to-hard masks look like at several curriculum shares alpha: realised masked fraction of the
valid frames, masked count per row, padding masked, and how strongly the masked frames concentrate on frames
with a high predicted loss (mean percentile rank of the masked frames' predicted loss within their row; 50 =
no preference, 100 = only the hardest frames).

Run: python -m bench.masking [--rows 16] [--trials 20] [--seed 0]
Each batch holds rows of similar length, as the length-bucketed loader makes them (a base length of 2-20 s of
audio, i.e. 100-1000 frames, +-5 % per row); predicted losses are smooth random curves (uniform noise averaged
over 25 frames), as per-frame losses are correlated in time. With P = 0.5 a sampler that masks only the hardest
half of the frames would reach a mean percentile of 75. Measured: the grid with its default `overlapping` budget
(the share data2vec 2.0's overlapping sampler masks on the same rows; the last column is its expectation), the
grid with the `exact` budget (share P), and the authors' release sampler. Prints a Markdown table; CPU, seconds.
"""

from __future__ import annotations

import torch

from bench.common import bench_parser
from pretrain.mask_budget import expected_masked_frames
from pretrain.masking import grid_mask, plan_grid_mask, plan_release_mask, release_mask

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
SAMPLERS = {
    "grid, overlapping budget": ("grid", "overlapping"),
    "grid, exact budget": ("grid", "exact"),
    "release": ("release", None),
}


def percentile_ranks(predicted: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row, each valid frame's rank of predicted loss as a percentile in [0, 100]."""
    scores = predicted.masked_fill(~valid, float("-inf"))
    ranks = scores.argsort(dim=1).argsort(dim=1).double()  # padding ranks lowest
    padding = (~valid).sum(dim=1, keepdim=True)
    lengths = valid.sum(dim=1, keepdim=True)
    return 100.0 * (ranks - padding) / (lengths - 1).clamp(min=1)


def measure(
    sampler: str,
    alpha: float,
    rows: int,
    trials: int,
    seed: int,
    mask_prob: float = 0.5,
    span_length: int = 5,
    budget: str | None = None,
) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    fractions, counts, padding_masked, hard_percentiles, expected = [], [], 0, [], []
    for _ in range(trials):
        base = int(torch.randint(100, 1001, (), generator=generator))
        spread = torch.rand(rows, generator=generator) * 0.1 + 0.95
        lengths = [max(10, int(base * float(f))) for f in spread]
        num_frames = max(lengths)
        valid = torch.arange(num_frames)[None, :] < torch.tensor(lengths)[:, None]
        noise = torch.rand(rows, 1, num_frames + 24, generator=generator)
        smooth = torch.nn.functional.avg_pool1d(noise, kernel_size=25, stride=1)[:, 0]
        predicted = smooth.masked_fill(~valid, 0.0)
        if sampler == "grid":
            plan = plan_grid_mask(
                lengths, mask_prob, span_length, alpha, generator, num_frames=num_frames, budget=budget
            )
            mask = grid_mask(predicted, plan)
        else:
            plan = plan_release_mask(lengths, mask_prob, span_length, alpha, generator, num_frames=num_frames)
            mask = release_mask(predicted, plan)
        per_row = mask.sum(dim=1)
        counts.append(per_row.tolist())
        fractions.append(float(per_row.sum()) / float(valid.sum()))
        expected.append(expected_masked_frames(lengths, mask_prob, span_length) * rows / float(valid.sum()))
        padding_masked += int((mask & ~valid).sum())
        hard_percentiles.append(float(percentile_ranks(predicted, valid)[mask].mean()))
    return {
        "fraction": sum(fractions) / len(fractions),
        "padding": padding_masked,
        "percentile": sum(hard_percentiles) / len(hard_percentiles),
        "equal_batches": sum(len(set(batch)) == 1 for batch in counts),
        "batches": len(counts),
        "overlapping_share": sum(expected) / len(expected),
    }


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, ["seed"])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"rows {args.rows}, trials {args.trials}, seed {args.seed}, P=0.5, L=5\n")
    print(
        "| sampler | alpha | masked fraction of valid frames | batches with equal count in every row "
        "| padding frames masked | mean predicted-loss percentile of masked frames "
        "| data2vec 2.0 sampler's expected share on these rows |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (sampler, budget) in SAMPLERS.items():
        for alpha in ALPHAS:
            m = measure(sampler, alpha, args.rows, args.trials, args.seed, budget=budget)
            print(
                f"| {name} | {alpha:.2f} | {m['fraction']:.3f} | {m['equal_batches']}/{m['batches']} "
                f"| {m['padding']} | {m['percentile']:.1f} | {m['overlapping_share']:.3f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
