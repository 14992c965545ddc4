"""EH-MAM inference package: encoder model (model.py), checkpoint format (checkpoint.py) and the s3prl
UpstreamExpert (expert.py, hubconf.py).

Self-contained (relative imports, torch + yaml only) so it can be copied to s3prl/upstream/ehmam/.
"""
