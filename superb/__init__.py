"""SUPERB through the real s3prl 0.4.18 runner: compatibility shims, upstream registration,
task configs and aliases, clean-room corpus loaders and data preparation.

Importing this package has no side effects; `superb.entry.main` (used by the root
`run_downstream.py`) applies the shims explicitly, and Python users call `setup_s3prl()` once.
"""


def setup_s3prl() -> list[str]:
    """Make PyPI s3prl usable from Python as toolkits use it (`s3prl.nn.S3PRLUpstream("ehmam",
    path_or_url=CKPT)` + `Featurizer`): apply the compatibility layer for current torch, torchaudio and
    huggingface_hub, then register this project's upstreams on `s3prl.hub`. Call it before the first
    `import s3prl...`; calling it again does nothing new. Returns the registered upstream names."""
    from .compat import apply_compat
    from .hub import register_upstreams

    apply_compat()
    return register_upstreams()
