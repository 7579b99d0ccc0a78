"""Speed benchmarks of emofx against a PyTorch eager reference (``python -m benchmarks.run``)."""
