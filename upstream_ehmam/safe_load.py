"""Reading a checkpoint file without running code from it: torch.load(weights_only=True), whose unpickler calls only
allow-listed globals, plus inert stand-ins for the numpy globals that trainer files (fairseq's among them) leave in
their bookkeeping. numpy itself is never imported or called: a numpy value comes back as a `ForeignValue`, which the
readers refuse wherever they need a real value (cfg["model"], the state dicts)."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

# What torch.load raises for truncated, corrupt or refused files.
_LOAD_ERRORS = (
    RuntimeError,
    EOFError,
    pickle.UnpicklingError,
    KeyError,
    ValueError,
    OSError,
    AttributeError,
    ImportError,
    IndexError,
    TypeError,
    zipfile.BadZipFile,
)


class ForeignValue:
    """Stand-in for a numpy scalar, array or dtype, or an argparse.Namespace: takes any arguments and state, keeps
    nothing, calls nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass

    def __repr__(self) -> str:
        return "<a numpy or argparse value, not read>"


# The paths under which numpy 1.x and 2.x pickle their scalars, arrays and dtypes, and argparse its Namespace (the
# `args` of pre-hydra fairseq files). Each maps to the stand-in, never to the real callable.
FOREIGN_GLOBALS = (
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "argparse.Namespace",
)


def read_checkpoint_file(path: str | os.PathLike) -> object:
    """The unpickled contents of `path` on the CPU; a ValueError naming the file when it is missing, not a file,
    truncated or corrupt, or holds a global outside the allow-list (code is refused, never run)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file; expected a checkpoint file")
    stand_ins = [(ForeignValue, name) for name in FOREIGN_GLOBALS]
    # Memory-mapped where the format allows: tensors nobody reads (a trainer's optimiser state) are never loaded.
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(stand_ins):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except _LOAD_ERRORS as err:
        text = str(err)
        if isinstance(err, pickle.UnpicklingError):  # the specific cause inside torch's long weights_only message
            if "WeightsUnpickler error:" in text:
                text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
            reason = " ".join(text.split()) or type(err).__name__
        else:
            reason = f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"
        if "Unsupported global" in reason or "unsupported GLOBAL" in reason or "unrecognized function" in reason:
            raise ValueError(
                f"{path}: holds pickled Python objects (code) that are refused without being run; a checkpoint "
                f"holds only tensors, plain containers and numbers ({reason.split('. Please')[0]})"
            ) from err
        raise ValueError(f"{path}: corrupt or truncated checkpoint, torch.load failed: {reason}") from err
