"""SUPERB through the real s3prl 0.4.18 runner: compatibility shims, upstream registration,
task configs and aliases, clean-room corpus loaders and data preparation.

Importing this package has no side effects; `superb.entry.main` (used by the root
`run_downstream.py`) applies the shims explicitly.
"""
