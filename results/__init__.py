"""SUPERB tabulation: scores recomputed from s3prl run directories, plus the published baselines.

Run `python -m results.tabulate <run dirs or a root> --out results/ [--synthetic | --real]`.
"""
