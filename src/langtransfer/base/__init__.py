"""The base model: its family (seq2seq or causal), loading it, the embedded tiny models."""
