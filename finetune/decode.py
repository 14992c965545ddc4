"""Score a fine-tuned checkpoint: Viterbi, and optionally a KenLM ARPA model with a lexicon (flashlight-text).

Run: python -m finetune.decode --ckpt runs/finetune_10m/best.pt --splits test-clean,test-other
       [--data MANIFEST_DIR] [--out DIR]
       [--lm LM.arpa --lexicon LEX --beam 1500 --lm-weight W --word-score S]
       [--tune dev-other --trials 128 --tune-beam 500 --seed 0]

The manifests and dictionary are those recorded in the checkpoint unless --data names another folder. --tune draws
`--trials` (LM weight in [0, 5], word score in [-5, 5]) pairs from --seed, keeps the pair with the lowest WER on the
tuning split and decodes the splits with it. Writes, under --out (default: the checkpoint's folder/decode), per split
`<split>.ref`, `<split>.viterbi.hyp` (and `<split>.lm.hyp`), one line per utterance in manifest order, plus
`wer.json` and `wer.md`; `tune.tsv` lists the trials.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch

from trainkit.cli import comma_list, refuse_old_spellings

from .checkpoint import load_for_decoding
from .data import BatchDataset, read_subset
from .evaluate import emissions, word_error_rate
from .letters import indices_to_words
from .lm_decoding import LMSettings, build_decoder, lm_transcripts, random_search
from .model import greedy_indices


def split_emissions(
    model, manifest_dir: Path, split: str, symbols: list[str], max_batch_samples: int, device: torch.device
) -> tuple[list[int], list[torch.Tensor], list[str]]:
    """(manifest indices, (T, V) log-probabilities, references) of a split's usable utterances, in manifest order."""
    subset = read_subset(manifest_dir, split, symbols)
    dataset = BatchDataset(subset, max_batch_samples, 0, False, "skip", model.encoder.config.receptive_field)
    rows = {}
    for indices, log_probs, frame_lengths in emissions(model, dataset, device):
        for index, lp, n in zip(indices, log_probs, frame_lengths.tolist()):
            rows[index] = lp[:n]
    order = sorted(rows)
    return order, [rows[i] for i in order], [subset.references[i] for i in order]


def viterbi(log_probs: list[torch.Tensor], symbols: list[str]) -> list[str]:
    return [indices_to_words(greedy_indices(lp[None], torch.tensor([lp.shape[0]]))[0], symbols) for lp in log_probs]


def tune(
    settings: LMSettings,
    symbols: list[str],
    log_probs: list[torch.Tensor],
    refs: list[str],
    trials: int,
    seed: int,
    out_dir: Path,
) -> LMSettings:
    """Random search on the tuning split; writes tune.tsv and returns the settings with the best pair."""

    def score(weight: float, word: float) -> float:
        decoder = build_decoder(replace(settings, lm_weight=weight, word_score=word), symbols)
        return word_error_rate(lm_transcripts(decoder, log_probs), refs)["wer"]

    results = random_search(score, trials, seed)
    lines = ["trial\tlm_weight\tword_score\twer"] + [
        f"{r['trial']}\t{r['lm_weight']:.4f}\t{r['word_score']:.4f}\t{r['wer']:.2f}" for r in results
    ]
    (out_dir / "tune.tsv").write_text("\n".join(lines) + "\n")
    return LMSettings(
        settings.lm,
        settings.lexicon,
        settings.beam,
        results[0]["lm_weight"],
        results[0]["word_score"],
        settings.beam_threshold,
        settings.sil_score,
    )


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def summary_markdown(summary: dict) -> str:
    lines = [
        f"# WER of {summary['checkpoint']}",
        "",
        "| split | utterances | Viterbi WER | Viterbi LER | LM WER |",
        "|---|---:|---:|---:|---:|",
    ]
    for split, result in summary["splits"].items():
        lm, viterbi = (f"{result['lm']['wer']:.2f}" if "lm" in result else "–"), result["viterbi"]
        lines.append(f"| {split} | {viterbi['sentences']} | {viterbi['wer']:.2f} | {viterbi['ler']:.2f} | {lm} |")
    if summary.get("lm"):
        lm = summary["lm"]
        lines += [
            "",
            f"LM: `{lm['lm']}`, lexicon `{lm['lexicon']}`, beam {lm['beam']}, LM weight "
            f"{lm['lm_weight']:.3f}, word score {lm['word_score']:.3f}",
        ]
    return "\n".join(lines) + "\n"


def decode(args: argparse.Namespace) -> dict:
    model, symbols, config = load_for_decoding(args.ckpt)
    device = torch.device(args.device)
    model.to(device)
    manifest_dir = Path(args.manifest_dir) if args.manifest_dir else Path(config.data.manifest_dir)
    out_dir = Path(args.out) if args.out else Path(args.ckpt).parent / "decode"
    out_dir.mkdir(parents=True, exist_ok=True)
    max_batch = config.data.max_batch_samples

    settings = None
    if args.lm or args.lexicon:
        if not (args.lm and args.lexicon):
            raise ValueError("--lm and --lexicon go together: LM decoding is lexicon-constrained")
        settings = LMSettings(Path(args.lm), Path(args.lexicon), args.beam, args.lm_weight, args.word_score)
        if args.tune:
            _, log_probs, refs = split_emissions(model, manifest_dir, args.tune, symbols, max_batch, device)
            settings = tune(
                replace(settings, beam=args.tune_beam), symbols, log_probs, refs, args.trials, args.seed, out_dir
            )
            settings = replace(settings, beam=args.beam)
    summary = {
        "checkpoint": str(args.ckpt),
        "manifest_dir": str(manifest_dir),
        "splits": {},
        "lm": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()} if settings else None,
        "tuned_on": args.tune if settings else None,
    }
    decoder = build_decoder(settings, symbols) if settings else None
    for split in comma_list(args.splits):
        _, log_probs, refs = split_emissions(model, manifest_dir, split, symbols, max_batch, device)
        write_lines(out_dir / f"{split}.ref", refs)
        hyps = viterbi(log_probs, symbols)
        write_lines(out_dir / f"{split}.viterbi.hyp", hyps)
        summary["splits"][split] = {"viterbi": word_error_rate(hyps, refs)}
        if decoder is not None:
            lm_hyps = lm_transcripts(decoder, log_probs)
            write_lines(out_dir / f"{split}.lm.hyp", lm_hyps)
            summary["splits"][split]["lm"] = word_error_rate(lm_hyps, refs)
    (out_dir / "wer.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out_dir / "wer.md").write_text(summary_markdown(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of python -m finetune.run (best.pt or last.pt)")
    parser.add_argument("--splits", default="test-clean,test-other", help="comma-separated manifest names")
    parser.add_argument("--manifest-dir", help="manifest folder (default: the one recorded in the checkpoint)")
    parser.add_argument("--out", help="output folder (default: the checkpoint's folder/decode)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lm", help="ARPA language model (python -m finetune.arpa writes small ones)")
    parser.add_argument("--lexicon", help="WORD<TAB>W O R D | lines (python -m finetune.prepare writes one)")
    parser.add_argument("--beam", type=int, default=1500)
    parser.add_argument("--lm-weight", type=float, default=2.0)
    parser.add_argument("--word-score", type=float, default=-1.0)
    parser.add_argument("--tune", help="split on which to tune LM weight and word score (e.g. dev-other)")
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--tune-beam", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    refuse_old_spellings(parser, "--data")
    args = parser.parse_args(argv)
    try:
        summary = decode(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
