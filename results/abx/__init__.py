"""Phone ABX per layer, the command line and its reports (abx.csv, abx.md, abx.png); the measurement itself is
measure/abx."""

ABX_FILES = 40  # utterances the demo, the study and the recipe search score phone ABX on: the first of ABX_SPLITS
ABX_SPLITS = ("dev-clean", "test-clean")
