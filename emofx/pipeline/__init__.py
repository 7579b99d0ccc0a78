"""Notebook pipeline: papermill batch runs and the paper's figures regenerated from their records."""
