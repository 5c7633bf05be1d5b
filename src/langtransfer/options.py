"""Evaluation options a study config checks and hashes, without loading a model.

Generation and label ranking (:mod:`langtransfer.inference.evaluate`) need torch; the
study config, its plan and the predictor's entries need only these names and numbers,
so they live here, where reading a study YAML imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

#: The generation budget of the paper's reference code, the default for every task. Its
#: ``trainer.predict`` passes no generation arguments (ref: src/task_modeling/run.py,
#: trainer_seq2seq_qa.py), so the model's generation config applies. mT0-base ships no
#: ``generation_config.json`` and (as far as could be checked offline) no ``max_length``
#: in its config, so transformers' default ``max_length=20`` holds; the reference's
#: transformers 4.36 counts the decoder start token in it: at most 19 new tokens.
#: (transformers 4.57 turns the same default into 20 *new* tokens, see
#: ``GenerationMixin._prepare_generated_length``, hence an explicit budget here.) Longer
#: NER and QA outputs are cut there, as in the paper; a larger ``max_new_tokens`` lifts it.
REFERENCE_MAX_NEW_TOKENS = 19
SCORING = ("generate", "rank")
#: evaluate's options that only generation reads, with their neutral values: given
#: anything else with ``scoring="rank"``, which generates nothing, they would be ignored.
GENERATION_ONLY: dict[str, int | None] = {"num_beams": 1, "max_new_tokens": None}
#: What label ranking computes, counted up when that changes: a study's ranked results
#: from before are then stale and rebuilt (a generated one keeps its hash). 1 scored the
#: whole label word; 2 scores it cut to the task's target length, as training taught it
#: (1 favoured the shortest word).
RANK_SCORING_REVISION = 2


def unused_by_ranking(**options: Any) -> list[str]:
    """The :data:`GENERATION_ONLY` options among ``options`` set to something other than
    their neutral value (None counts as not given), in that table's order."""
    return [name for name, neutral in GENERATION_ONLY.items()
            if options.get(name) not in (None, neutral)]
