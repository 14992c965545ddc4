"""s3prl hub entries: `-u ehmam` (student weights) and `-u ehmam_teacher` (EMA teacher weights).

s3prl star-imports this file and registers every public callable, so only these two are public.
"""
from .expert import UpstreamExpert as _UpstreamExpert

__all__ = ["ehmam", "ehmam_teacher"]


def ehmam(ckpt=None, model_config=None, refresh=False, **kwargs):
    """EH-MAM encoder from a local checkpoint (-k); -g: student | teacher | options YAML."""
    return _UpstreamExpert(ckpt, model_config=model_config, refresh=refresh, **kwargs)


def ehmam_teacher(ckpt=None, model_config=None, refresh=False, **kwargs):
    """EH-MAM encoder with the EMA teacher's context encoder (needs teacher weights in the checkpoint)."""
    if kwargs.get("weights", "teacher") != "teacher":
        raise ValueError(f"ehmam_teacher loads teacher weights; found weights={kwargs['weights']!r} (use ehmam)")
    return _UpstreamExpert(ckpt, model_config=model_config, refresh=refresh, **{**kwargs, "weights": "teacher"})
