"""Experiment harnesses (apart from the library)."""
