"""Phone ABX (ZeroSpeech triphone ABX) per layer: items, batched DTW scoring, references, reports, CLI."""
