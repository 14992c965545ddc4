"""Experiments: the demo, the study and the recipe search as pipelines of named stages.

Each stage runs one of the project's own commands (mini-SUPERB, pretrain/run.py, run_downstream.py, results.abx,
results.layerwise, results.tabulate), records it as a user would type it, and times it. What the stages leave in
run directories is turned into reports by results/, which never imports this package.
"""
