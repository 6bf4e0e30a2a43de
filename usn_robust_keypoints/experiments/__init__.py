"""Experiment harnesses (not part of the library API): each writes its tables to ``results/``."""
