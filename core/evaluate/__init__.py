"""Batch evaluation of a run: eval loss, generated predictions and their scores against references."""
