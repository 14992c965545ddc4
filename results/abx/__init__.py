"""Phone ABX per layer, the command line and its reports (abx.csv, abx.md, abx.png); the measurement itself is
measure/abx."""
