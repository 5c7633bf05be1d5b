"""Building study artefacts with the library's own training and evaluation functions.

:class:`StudyBuilder` turns an :class:`~langtransfer.study.jobs.Artefact` into a call of
``train_language``, ``train_task`` or ``evaluate`` whose arguments come from the
artefact's job (and where things go from the artefact), nothing else. It loads the base
model once (:class:`~langtransfer.composition.loaded_base.LoadedBase`) and passes it to every call,
evaluation cells included, and after each trained artefact proves that the frozen base
weights are unchanged (:meth:`~langtransfer.composition.loaded_base.LoadedBase.weights_digest`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer.errors import LangTransferError
from langtransfer.study.jobs import Artefact, CombinedJob, EvaluationJob, LanguageJob, TaskJob

if TYPE_CHECKING:
    from langtransfer.composition.loaded_base import LoadedBase


class BaseChangedError(LangTransferError):
    """Training an artefact changed the frozen base model's weights."""


class StudyBuilder:
    """Builds artefacts of one study directory; call it with an artefact.

    ``base_loads`` counts how often this builder loaded the base model: once per process,
    unless a training changed the frozen weights (the base is then loaded afresh).
    """

    def __init__(self, study_dir: str | Path, *, show_progress: bool = False):
        self.study_dir = Path(study_dir)
        self.show_progress = show_progress
        self.base_loads = 0
        self._base: LoadedBase | None = None
        self._digest = ""

    def load_base(self, name: str) -> LoadedBase:
        from langtransfer.composition.loaded_base import LoadedBase

        return LoadedBase.load(name)

    def model(self, name: str) -> Any:
        """The loaded base called ``name``, loaded on first use. A study of several bases
        plans each one's artefacts together, so each is loaded once; the previous one is
        released when the next is loaded."""
        if self._base is None or self._base.name != name:
            self._base = None  # the previous base is freed before the next one loads
            self._base = self.load_base(name)
            self.base_loads += 1
            self._digest = self._base.weights_digest()
        return self._base

    def check_frozen(self, art: Artefact) -> None:
        """Fail ``art`` (removing what it wrote) if its training changed the base."""
        if self._base is None:
            return
        digest = self._base.weights_digest()
        if digest != self._digest:
            self._base = None  # never build on a changed base: the next artefact reloads it
            shutil.rmtree(art.path, ignore_errors=True)
            raise BaseChangedError(
                f"training {art.id} changed the frozen base model's weights (digest "
                f"{self._digest[:12]} -> {digest[:12]}); its output {art.path} was removed and "
                "the base is reloaded for the next artefact"
            )

    def __call__(self, art: Artefact) -> None:
        job = art.job
        if isinstance(job, LanguageJob):
            self.train_language(art, job)
            self.check_frozen(art)
        elif isinstance(job, CombinedJob):
            self.compose_language(art, job)
        elif isinstance(job, TaskJob):
            self.train_task(art, job)
            self.check_frozen(art)
        elif isinstance(job, EvaluationJob):
            self.evaluate(art, job)
        else:  # pragma: no cover - the four job types are all there are
            raise TypeError(f"unknown job {job!r}")

    def train_language(self, art: Artefact, job: LanguageJob) -> None:
        from langtransfer.training.language import train_language

        train_language(
            model=self.model(job.model),
            language=job.language,
            kind=job.kind,
            corpus=job.corpus,
            output=art.path,
            settings=job.train,
            spec=job.spec,
            sequence_length=job.sequence_length,
            max_documents=job.max_documents,
            max_tokens=job.max_tokens,
            corpus_extent=job.corpus_extent,
            validation_size=job.validation_documents,
            checkpoint_dir=art.work,
            resume=True,
            overwrite=True,
            settings_hash=art.hash,
            show_progress=self.show_progress,
            profile=job.profile,
        )

    def compose_language(self, art: Artefact, job: CombinedJob) -> None:
        """No training: the weighted combination of the parts' trained representations
        (adapters are averaged on the loaded base, which is left as it was)."""
        from langtransfer.composition import combine

        combine.combine_language_representations(
            {art.inputs[lang]: weight for lang, weight in job.weights},
            art.path,
            language=job.language,
            model=self.model(job.model),
            weights_from=job.weights_from,
            settings_hash=art.hash,
            overwrite=True,
        )

    def train_task(self, art: Artefact, job: TaskJob) -> None:
        from langtransfer.training.task import train_task

        train_task(
            model=self.model(job.model),
            task=job.task,
            language=job.source,
            kind=job.kind,
            output=art.path,
            language_rep=art.inputs.get("language"),
            data=job.train_data,
            validation_data=job.validation_data,
            settings=job.train,
            spec=job.spec,
            max_length=job.sequence_length,
            max_target_length=job.max_target_length,
            max_examples=job.max_train_examples,
            reference_slp_stp_quirk=job.reference_slp_stp_quirk,
            label_order=job.label_order,
            empty_answers=job.empty_answers,
            profile=job.profile,
            checkpoint_dir=art.work,
            resume=True,
            overwrite=True,
            settings_hash=art.hash,
            show_progress=self.show_progress,
        )

    def evaluate(self, art: Artefact, job: EvaluationJob) -> None:
        from langtransfer.inference.evaluate import evaluate
        from langtransfer.results.records import write_record

        record = evaluate(
            model=self.model(job.model),
            task=job.task,
            language=job.target,
            language_rep=art.inputs.get("language"),
            task_rep=art.inputs.get("task"),
            data=job.test_data,
            output=art.work,
            max_examples=job.max_eval_examples,
            show_progress=self.show_progress,
            label_order=job.label_order,
            empty_answers=job.empty_answers,
            profile=job.profile,
            # explicit even at "first" (which to_dict leaves out of the hash): the profile
            # decides only what the job leaves open, and the job leaves nothing open
            **{**job.evaluation.to_dict(), "long_inputs": job.evaluation.long_inputs},
        )
        record.update(
            source_language=job.source,
            target_language=job.target,
            configuration=job.configuration,
            settings_hash=art.hash,
            metrics_fingerprint=job.metrics,
            seed=job.seed,
            model_label=art.model_label,  # "" (one base) is stored as absent
        )
        if job.variant:
            record["variant"] = job.variant
            composition = _composition(art.inputs.get("language"))
            if composition is not None:
                record["composition"] = composition
        write_record(self.study_dir, record)


def _composition(language_rep: Path | None) -> dict[str, Any] | None:
    """What a composed language representation is made of (its parts' weights and where
    they came from), for the result record; None for a trained one."""
    if language_rep is None:
        return None
    from langtransfer.representations import read_manifest

    composed = (read_manifest(language_rep).get("training") or {}).get("composed")
    if not isinstance(composed, dict):
        return None
    return {
        "weights": {p["language"]: p["weight"] for p in composed.get("parts", [])},
        "weights_from": composed.get("weights_from"),
        "method": composed.get("method"),
    }
