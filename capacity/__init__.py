"""Thesis 000, ch. 5: effective capacity (see README.md)."""
