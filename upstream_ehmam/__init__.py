"""EH-MAM inference package: encoder model, checkpoint format and the s3prl UpstreamExpert.

Self-contained (relative imports, torch + yaml only) so it can be copied to s3prl/upstream/ehmam/.
"""
from .checkpoint import FORMAT_VERSION, build_encoder, export_encoder, load_checkpoint, load_encoder, save_atomic
from .config import EncoderConfig, frames_for_samples
from .expert import UpstreamExpert
from .frontend import MelLocalEncoder
from .model import ContextEncoder, ContextOutput, EHMAMEncoder, LocalEncoder, init_weights, normalize_waveforms

__all__ = [
    "FORMAT_VERSION", "build_encoder", "export_encoder", "load_checkpoint", "load_encoder", "save_atomic",
    "EncoderConfig", "frames_for_samples", "UpstreamExpert", "MelLocalEncoder",
    "ContextEncoder", "ContextOutput", "EHMAMEncoder", "LocalEncoder", "init_weights", "normalize_waveforms",
]
