"""What pretrain/ and finetune/ share: config loading and validation, the run's process and signals, run-directory
files and logs, and fault counting."""
