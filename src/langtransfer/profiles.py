"""Named profiles: the settings that decide whether a run reproduces the paper's published
numbers or follows the method as the paper describes it.

The paper's numbers were computed by its reference code
(``kinit-sk/adapter-prompt-evaluation``), which differs from the method as described in a
few places, some of them accidents (``docs/fidelity.md`` lists each). A profile fixes
every such setting at once:

================================  ==================  =========================
setting                           ``method``          ``reference``
================================  ==================  =========================
task prompts keep the best        yes                 no: the final step's
checkpoint (eval loss)                                (the reference's keep-best
                                                      never found its prompts)
prompt parameter rows             the prompt's        2 × the prompt's tokens
                                  tokens              (PEFT's seq2seq shape; the
                                                      encoder uses the first)
``slp+stp`` training forward      ``[L][T][x]``       ``[L][L][T][x]``
QA rows with an empty answer      dropped             kept (they score 0 F1)
inputs over ``max_length`` at     the first           the last 256-token chunk's
test time                         ``max_length``      prediction
                                  tokens
integer class labels              by the data's       by position (the
                                  class names         reference's reading)
================================  ==================  =========================

Everything else (span corruption drawn afresh for every pass over the text, keep-best for
adapters, the schedules, lengths and metrics) is the same in both. ``method`` is the
default: a run that names no profile gets it, with the settings every earlier run had.

This module is the one table every entry point reads (the study config, the CLI verbs,
the Python functions' defaults); it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from langtransfer.errors import UnknownNameError

#: How integer labels are read where the data names its classes (``tasks.LABEL_ORDERS``).
LABEL_ORDERS: tuple[str, ...] = ("by_name", "positional")
#: What happens to a QA row whose gold answer text is empty.
EMPTY_ANSWERS: tuple[str, ...] = ("drop", "keep")
#: How an evaluation input longer than ``max_length`` tokens is read: its ``first``
#: ``max_length`` tokens (end token kept), or cut into ``max_length``-token chunks as the
#: reference's tokenizer call does (``return_overflowing_tokens``) and the ``last_chunk``
#: predicted.
LONG_INPUTS: tuple[str, ...] = ("first", "last_chunk")


@dataclass(frozen=True)
class Profile:
    """One named set of the settings in the module's table."""

    name: str
    summary: str
    #: keep-best (lowest validation loss) for soft task prompts; adapters always keep it.
    task_prompt_keep_best: bool
    #: The prompt parameter's rows per virtual token the encoder uses (1, or 2 as the
    #: reference's PEFT-shaped parameter: the unused rows get no gradient but count in
    #: Adafactor's update clipping).
    prompt_rows_per_token: int
    #: ``slp+stp`` task prompts trained with the language prompt twice in forward.
    slp_stp_language_prompt_twice: bool
    empty_answers: str
    long_inputs: str
    label_order: str

    def prompt_parameter_rows(self, num_tokens: int) -> int | None:
        """A prompt's ``parameter_rows`` under this profile (None: as many as its tokens)."""
        return None if self.prompt_rows_per_token == 1 else num_tokens * self.prompt_rows_per_token

    def settings(self) -> dict[str, Any]:
        """The profile's settings (without name and summary), for manifests and docs."""
        return {k: v for k, v in asdict(self).items() if k not in ("name", "summary")}


METHOD = Profile(
    name="method",
    summary="the method as the paper describes it, the reference's accidents corrected",
    task_prompt_keep_best=True,
    prompt_rows_per_token=1,
    slp_stp_language_prompt_twice=False,
    empty_answers="drop",
    long_inputs="first",
    label_order="by_name",
)
REFERENCE = Profile(
    name="reference",
    summary="the published numbers as the paper's reference code computed them",
    task_prompt_keep_best=False,
    prompt_rows_per_token=2,
    slp_stp_language_prompt_twice=True,
    empty_answers="keep",
    long_inputs="last_chunk",
    label_order="positional",
)
PROFILES: dict[str, Profile] = {p.name: p for p in (METHOD, REFERENCE)}
#: What a run that names no profile gets: every setting as before profiles existed.
DEFAULT_PROFILE = METHOD.name


def get_profile(name: str | Profile | None) -> Profile:
    """The profile called ``name`` (None: the default); an unknown name is a one-line
    error listing the profiles."""
    if isinstance(name, Profile):
        return name
    if name is None:
        return PROFILES[DEFAULT_PROFILE]
    if not isinstance(name, str) or name not in PROFILES:
        raise UnknownNameError("profile", name, PROFILES)
    return PROFILES[name]


def check_choice(what: str, value: str, valid: tuple[str, ...]) -> str:
    """``value`` if it is one of ``valid``, else a one-line error naming both."""
    if value not in valid:
        raise UnknownNameError(what, value, valid)
    return value
