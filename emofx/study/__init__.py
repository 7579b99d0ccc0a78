"""Studies: evaluation, statistics, run directories and the comparison of cultures."""
