"""Training representations: settings, the Trainer, the language and task loops,
objectives, corpora."""
