"""Predicting with a composed model: generation and label ranking, evaluating one
cell, scoring prediction files."""
