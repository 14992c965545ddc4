"""Importing torchaudio next to a torch build its compiled extension was not built for: the pure-Python parts
(functional, transforms, compliance, the CTC decoder's Python side) work with the extension stubbed."""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import types

log = logging.getLogger("torchaudio_import")


def make_extension_stub() -> types.ModuleType:
    """A `torchaudio._extension` that reports the C++ extension as unavailable; alignment ops raise."""
    stub = types.ModuleType("torchaudio._extension")
    stub.__doc__ = "stub: the torchaudio C++ extension cannot load next to this torch build"
    stub._IS_TORCHAUDIO_EXT_AVAILABLE = False
    stub._IS_ALIGN_AVAILABLE = False
    stub._load_lib = lambda name: False
    stub._check_cuda_version = lambda: None

    def fail_if_no_align(func):
        @functools.wraps(func)
        def unavailable(*args, **kwargs):
            raise RuntimeError(f"torchaudio.{func.__name__} needs torchaudio's C++ extension, which cannot load")

        return unavailable

    stub.fail_if_no_align = fail_if_no_align
    return stub


def import_torchaudio() -> types.ModuleType:
    """Import torchaudio; if its C++ extension fails to load, retry with the extension stubbed."""
    if "torchaudio" in sys.modules:
        return sys.modules["torchaudio"]
    try:
        return importlib.import_module("torchaudio")
    except OSError as error:  # e.g. "Could not load this library: .../_torchaudio.abi3.so"
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]
        sys.modules["torchaudio._extension"] = make_extension_stub()
        log.info("torchaudio C++ extension unavailable (%s); using the pure-Python paths", error)
        return importlib.import_module("torchaudio")
