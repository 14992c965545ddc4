"""mini-SUPERB: a deterministic synthetic speech corpus (espeak-ng) written in the real on-disk layouts of
the seven SUPERB tasks' corpora, plus pretraining audio. `generate()` or `python -m minisuperb`."""

__version__ = "0.1.0"

from .generate import check_setup, generate, read_marker, source_fingerprint  # noqa: E402

__all__ = ["__version__", "check_setup", "generate", "read_marker", "source_fingerprint"]
