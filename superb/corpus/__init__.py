"""Clean-room `ctc/corpus` package for s3prl 0.4.18 (PR: `libriphone`, SF: `snips`).

PyPI s3prl lacks it; `superb.runner_fixes.graft_ctc_corpus` appends `superb/` to
`s3prl.downstream.ctc.__path__`, so `ctc/data.py`'s `from .corpus.libriphone import ...` lands here.
Modules use relative imports only: they load both as `superb.corpus.*` and as
`s3prl.downstream.ctc.corpus.*`.
"""
