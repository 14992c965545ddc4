"""Phone ABX: items from alignments, DTW scoring, representations and the per-layer summary."""
