"""Measurement below training and reporting: the aligned-corpus reader, the log-mel reference features and phone
ABX. pretrain/ (the ABX monitor) and results/ (reports) both use it; it imports only upstream_ehmam."""
