"""The results store: one record per evaluation cell, and the records of failed artefacts."""
