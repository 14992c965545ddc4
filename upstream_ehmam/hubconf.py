"""s3prl hub entries: `-u ehmam` (student weights) and `-u ehmam_teacher` (EMA teacher weights).

s3prl star-imports this file and registers every public callable, so only these two are public.
"""

from .expert import TeacherExpert as _TeacherExpert
from .expert import UpstreamExpert as _UpstreamExpert

__all__ = ["ehmam", "ehmam_teacher"]


def ehmam(ckpt=None, model_config=None, refresh=False, **kwargs):
    """EH-MAM encoder from a local checkpoint (-k); -g: teacher, num_layers=K, both comma-separated, or a YAML file."""
    return _UpstreamExpert(ckpt, model_config=model_config, refresh=refresh, **kwargs)


def ehmam_teacher(ckpt=None, model_config=None, refresh=False, **kwargs):
    """EH-MAM encoder with the EMA teacher's context encoder (needs teacher weights in the checkpoint)."""
    return _TeacherExpert(ckpt, model_config=model_config, refresh=refresh, **kwargs)
