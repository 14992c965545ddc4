"""EH-MAM inference package: encoder model, checkpoint format and the s3prl UpstreamExpert. Self-contained (relative
imports, torch + yaml only) so that it can be copied to s3prl/upstream/ehmam/."""
