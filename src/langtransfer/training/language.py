"""Training a language representation (soft language prompt or language adapter).

Unlabelled text of one language -> the base family's language objective (T5 span
corruption for seq2seq, next-token language modelling in packed blocks for causal) -> a
prompt or adapter trained on the frozen base model -> a representation directory whose
manifest records the objective and the validation loss with and without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import set_seed

from langtransfer.composition.loaded_base import LoadedBase
from langtransfer.configurations import configuration_for
from langtransfer.errors import LangTransferError, OutputExistsError
from langtransfer.languages import get_language
from langtransfer.profiles import get_profile
from langtransfer.representations.base import representation_id
from langtransfer.representations.kinds import SpecContext, get_kind
from langtransfer.representations.store import read_manifest
from langtransfer.training.corpora import (
    STREAM_SHUFFLE_BUFFER,
    Corpus,
    TokenCapped,
    cap_tokens,
    load_corpus,
)
from langtransfer.training.next_token import next_token_dataset
from langtransfer.training.span_corruption import span_corruption_dataset
from langtransfer.training.trainer import (
    TrainSettings,
    default_settings,
    evaluation_loss,
    train_representation,
)

#: Language objectives by name (:attr:`langtransfer.base.families.ModelFamily.language_objective`).
LANGUAGE_OBJECTIVES = {
    "span_corruption": span_corruption_dataset,
    "next_token": next_token_dataset,
}


def check_output(output: Path, overwrite: bool, resume: bool = False, **expected: Any) -> None:
    """Refuse to replace a directory holding a representation unless asked.

    A *different* representation is replaced only with ``overwrite``; the same one
    (kind, role and subject) also with ``resume``, which retrains it from its checkpoints.
    """
    if not output.exists() or overwrite:
        return
    if output.is_dir() and not any(output.iterdir()):
        return
    try:
        manifest = read_manifest(output)
    except LangTransferError:
        raise OutputExistsError(
            f"{output} already exists and is not a representation; pass --overwrite to replace it"
        ) from None
    differs = {k: (manifest.get(k), v) for k, v in expected.items() if manifest.get(k) != v}
    if differs or not resume:
        what = ", ".join(f"{k} {a!r} (wanted {b!r})" for k, (a, b) in differs.items())
        raise OutputExistsError(
            f"{output} already holds a trained representation{': ' + what if what else ''}; "
            "pass --overwrite to replace it"
        )


def _train_documents(text: Corpus, texts: Iterable[str]) -> int | None:
    """Documents trained on (a stream's: its row range; empty rows are skipped in it)."""
    if isinstance(texts, list):
        return len(texts)
    return len(text.train) if isinstance(text.train, list) else text.max_documents


def _train_tokens(texts: Iterable[str], tokenizer: Any) -> int | None:
    if isinstance(texts, TokenCapped):
        return texts.tokens or None  # a stream: known once it was read to its cap
    if isinstance(texts, list):
        return sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    return None


def train_language(
    *,
    model: str | LoadedBase,
    language: str,
    kind: str,
    corpus: str,
    output: str | Path,
    settings: TrainSettings | None = None,
    spec: Any = None,
    sequence_length: int = 256,
    max_documents: int | None = None,
    max_tokens: int | None = None,
    corpus_extent: str = "paper",
    validation_size: int | float | None = None,
    shuffle_buffer: int | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    settings_hash: str | None = None,
    show_progress: bool = True,
    trust_remote_code: bool = False,
    profile: str | None = None,
) -> Path:
    """Train a language representation of ``kind`` (prompt, adapter...) and save it to
    ``output``.

    ``model`` is a :class:`LoadedBase` (shared, left as it was) or a name, which loads one.
    ``corpus`` is ``wikipedia``, ``fixture`` or a local file. ``spec`` is the kind's spec,
    or a mapping of its option keys over the kind's default (None: the default; a prompt's
    is 50 tokens initialised from ``Generate the output in {Language}:``), which
    ``profile`` shapes; training defaults to the paper's settings for the kind.
    Checkpoints go to ``checkpoint_dir`` (default ``<output>.checkpoints``) so a killed
    run resumes with ``resume``. A streamed corpus (Wikipedia) is shuffled with a buffer
    of ``shuffle_buffer`` training blocks (default
    :data:`~langtransfer.training.corpora.STREAM_SHUFFLE_BUFFER`); local files are
    map-style datasets, drawn at random by the Trainer.

    How much text: ``corpus_extent`` ``paper`` (the reference's slice) or ``full`` (the
    whole source, see :func:`~langtransfer.training.corpora.load_corpus`), ``max_documents`` and
    ``max_tokens`` cap its training documents and tokens. A prompt with init ``frequent``
    gets the language's most frequent training tokens here (recorded in its manifest).
    ``profile`` (:mod:`langtransfer.profiles`; default ``method``): the default spec (a
    prompt's parameter rows: the reference's 2 x 50); recorded in the manifest.
    """
    kind_obj = get_kind(kind)
    lang = get_language(language)
    output = Path(output)
    check_output(output, overwrite, resume, kind=kind, role="language", language=lang.code)
    settings = settings or default_settings(kind, "language")
    loaded = LoadedBase.of(model, trust_remote_code=trust_remote_code)
    base, tokenizer = loaded.model, loaded.tokenizer
    text = load_corpus(
        corpus,
        lang,
        max_documents=max_documents,
        validation_size=validation_size,
        seed=settings.seed,
        extent=corpus_extent,
    )
    texts: Iterable[str] = text.train
    if max_tokens is not None:
        texts = cap_tokens(text.train, tokenizer, max_tokens)
        if not text.streaming:
            texts = list(texts)
    objective = loaded.family.language_objective
    make_dataset = LANGUAGE_OBJECTIVES[objective]
    # training=True: span corruption draws new masks in every pass over the text
    train = make_dataset(texts, tokenizer, input_length=sequence_length, seed=settings.seed,
                         training=True)
    if text.streaming:
        # The reference's map-style dataset draws batches at random from all blocks; a
        # stream is shuffled within a buffer (seeded, and re-seeded per epoch by Trainer's
        # set_epoch, so a resumed run replays the same order).
        train = train.shuffle(
            seed=settings.seed, buffer_size=shuffle_buffer or STREAM_SHUFFLE_BUFFER
        )
    validation = make_dataset(
        text.validation,
        tokenizer,
        input_length=sequence_length,
        seed=settings.seed + 1,
        streaming=False,
    )
    if isinstance(train, Dataset) and len(train) == 0:
        raise LangTransferError(
            f"corpus {text.source} is too short for one training sequence of {sequence_length} "
            "tokens; add text or lower --sequence-length"
        )
    if len(validation) == 0:
        raise LangTransferError(
            f"the validation slice of {text.source} is too short for one sequence of "
            f"{sequence_length} tokens; raise --validation-size or lower --sequence-length"
        )
    with loaded.compose("base") as bare:
        loss_without = evaluation_loss(bare, validation, tokenizer)
    # One id per trained artefact, the same in every process (a resumed run's checkpoints
    # fit); the slot is given back when training ends.
    rep_id = representation_id("language", kind, lang.code, "training")
    chosen = get_profile(profile)
    if spec is None or isinstance(spec, Mapping):
        spec = kind_obj.profile_spec(kind_obj.spec(dict(spec or {}), SpecContext(
            "language", lang.name, lang.instruction, seed=settings.seed)), chosen)
    spec = kind_obj.with_text(kind_obj.check_spec(spec), texts, tokenizer)  # frequent tokens
    rep = kind_obj.new("language", spec, base, tokenizer, language=lang.code,
                       settings_hash=settings_hash, id=rep_id)
    # An adapter's weights are drawn from the global RNG when it is attached, before the
    # Trainer seeds anything: seed here so the same seed gives the same representation.
    set_seed(settings.seed)
    composed = loaded.compose(configuration_for(kind, None).name, language=rep, train="language")
    try:
        loss_initial = evaluation_loss(composed, validation, tokenizer)
        trainer, summary = train_representation(
            composed,
            tokenizer,
            train,
            settings.__class__(**{**settings.to_dict(), "group_by_length": False}),
            checkpoint_dir or output.with_name(output.name + ".checkpoints"),
            resume=resume,
            show_progress=show_progress,
        )
        summary.update(
            profile=chosen.name,
            corpus=text.source,
            objective=objective,
            # span corruption's masks are new in every pass over the text (before issue
            # 22 they were drawn once per block): says which a representation had
            **({"mask_draws": "per_pass"} if objective == "span_corruption" else {}),
            max_documents=max_documents,
            max_tokens=max_tokens,
            corpus_extent=corpus_extent,
            sequence_length=sequence_length,
            # A stream's slice is a row range (empty rows are skipped inside it).
            train_documents=_train_documents(text, texts),
            # Tokens trained on, counted where known: local text, or a token-capped one.
            train_tokens=_train_tokens(texts, tokenizer),
            shuffle_buffer=(shuffle_buffer or STREAM_SHUFFLE_BUFFER) if text.streaming else None,
            validation_documents=len(text.validation),
            validation_sequences=len(validation),
            validation_loss_without=loss_without,
            validation_loss_initial=loss_initial,
            validation_loss=evaluation_loss(composed, validation, tokenizer),
        )
        if trainer.is_world_process_zero():
            composed.save("language", output, training=summary, overwrite=True)
        trainer.accelerator.wait_for_everyone()
    finally:
        composed.close()  # the shared base keeps nothing of this run
    return output
