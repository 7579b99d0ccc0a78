"""Explanations: saliency methods, their sanity checks and metrics, and emotion modification."""
