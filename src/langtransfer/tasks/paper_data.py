"""The paper's data: per task, language and split, the source the reference implementation read.

Read from ``kinit-sk/adapter-prompt-evaluation`` (``src/tasks/tasks.py`` for the sets and
their splits, ``src/scripts/{qa,ner,xnli,checkworthy}.py`` for the training languages,
``src/scripts/crosslingual.py`` for the test sets). ``docs/data.md`` is the table in prose.

Two split patterns recur (``pick``, see :class:`~langtransfer.tasks.sources.DataSource`):

* a train split and a test split: validation is the 15% part of train, training the 85%
  (SQuAD, MLQA translate-train, the SQuAD 2.0 translations, ChineseSQuAD, TeQuAD, UQA);
* one split only (Arabic-SQuAD, KenSwQuAD): test is its 15% part, validation 15% of the
  other 85%, training the rest.

The ``prepare`` functions are the reference's schema mappings, applied to the whole set
before any split so that the row order (and so the split) is the reference's.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from langtransfer.errors import DataFormatError
from langtransfer.tasks.sources import DataSource, Records, read_lines

TRAIN, VALID = ("train",), ("test",)  # picks of a train/test set: 85% train, 15% validation
ONE_TEST, ONE_VALID, ONE_TRAIN = ("test",), ("train", "test"), ("train", "train")


# ------------------------------------------------------------ schema mappings
def uqa_rows(records: Records) -> Records:
    """``uqa/UQA``'s flat rows (one per answer) -> one row per question id, in first order."""
    by_id: dict[Any, dict[str, Any]] = {}
    for r in records:
        row = by_id.get(r["id"])
        if row is None:
            by_id[r["id"]] = {
                "id": r["id"], "context": r["context"], "question": r["question"],
                "answers": {"text": [r["answer"]], "answer_start": [r["answer_start"]]},
            }
        else:
            row["answers"]["text"].append(r["answer"])
            row["answers"]["answer_start"].append(r["answer_start"])
    return list(by_id.values())


def arabic_squad_rows(records: Records) -> Records:
    """``Mostafa3zazi/Arabic_SQuAD``: ``index``/``text``/``answer_start`` -> SQuAD rows."""
    return [
        {"id": r["index"], "context": r["context"], "question": r["question"],
         "answers": {"text": [r["text"]], "answer_start": [r["answer_start"]]}}
        for r in records
    ]


def kenswquad_rows(records: Records) -> Records:
    """``lightblue/KenSwQuAD`` has no ids: the reference numbers the rows."""
    return [
        {"id": str(i), "context": r["context"], "question": r["question"],
         "answers": {"text": list(r["answers"]["text"]), "answer_start": []}}
        for i, r in enumerate(records)
    ]


def tequad_rows(files: list[Path]) -> Records:
    """TeQuAD's four line-aligned text files: answers, questions, contexts, spans.

    A span line is ``<start>\\t<end>``; the answer is stripped, as the reference does.
    """
    answers, questions, contexts, spans = (read_lines(f) for f in files)
    lengths = {len(answers), len(questions), len(contexts), len(spans)}
    if len(lengths) != 1:
        counts = ", ".join(f"{f.name} {len(lines)}" for f, lines in zip(
            files, (answers, questions, contexts, spans), strict=True))
        raise DataFormatError(files[0], f"TeQuAD files have different line counts: {counts}")
    rows = []
    for i, (a, q, c, s) in enumerate(zip(answers, questions, contexts, spans, strict=True)):
        try:
            start = int(s.split("\t")[0])
        except ValueError:
            raise DataFormatError(files[3], f"span {s!r:.40} does not start with a number",
                                  i + 1) from None
        rows.append({"id": str(i), "context": c, "question": q,
                     "answers": {"text": [a.strip()], "answer_start": [start]}})
    return rows


def si_nli_rows(records: Records) -> Records:
    """``cjvt/si_nli``'s string labels; anything else (the public test split's empty label)
    becomes contradiction, as the reference maps it."""
    ids = {"entailment": 0, "neutral": 1}
    return [{**r, "label": ids.get(r["label"], 2)} for r in records]


_RONLI_LABELS = {0: 2, 1: 0, 3: 1}  # RONLI 0 contradiction, 1 entailment, 3 neutral; 2 dropped


def ronli_rows(records: Records) -> Records:
    """RONLI's four labels -> XNLI's three; its label 2 is dropped, as the reference does."""
    out = []
    for r in records:
        label = r["label"]
        if label not in (0, 1, 2, 3) or isinstance(label, bool):
            raise ValueError(f"RONLI label {label!r} in column 'label'; valid: 0, 1, 2, 3")
        if label != 2:
            out.append({**r, "label": _RONLI_LABELS[label]})
    return out


# ----------------------------------------------------------------- sources
def hub(dataset: str, config: str | None, split: str, pick: tuple[str, ...] = (),
        **kw: Any) -> DataSource:
    return DataSource(dataset, config, split, pick=pick, **kw)


def local(note: str, *files: str, pick: tuple[str, ...] = (), **kw: Any) -> DataSource:
    return DataSource(note=note, revision=None, local=files, pick=pick, **kw)


def _train_valid_test(train: DataSource, test: DataSource) -> dict[str, DataSource]:
    return {"train": _with(train, TRAIN), "validation": _with(train, VALID), "test": test}


def _one_split(src: DataSource) -> dict[str, DataSource]:
    return {"train": _with(src, ONE_TRAIN), "validation": _with(src, ONE_VALID),
            "test": _with(src, ONE_TEST)}


def _with(src: DataSource, pick: tuple[str, ...]) -> DataSource:
    return replace(src, pick=pick)


def _mlqa(lang: str, split: str) -> DataSource:
    # Main is a loading script; the parquet export keeps the script's config names as dirs.
    return hub("facebook/mlqa", f"mlqa-translate-train.{lang}", split)


def _local_squad(note: str, train: str, test: str) -> dict[str, DataSource]:
    return _train_valid_test(local(note, train), local(note, test))


_TEQUAD = "TeQuAD (Telugu SQuAD), text files"
_TEQUAD_TRAIN = tuple(f"Train/real_{k}_tel.txt" for k in ("ans", "que", "con", "span"))
_TEQUAD_TEST = ("Test/Corrected/corrected_ans_tel.txt", "Test/Corrected/que_tel.txt",
                "Test/Corrected/real_con_tel.txt", "Test/Corrected/span_tel.txt")

QA_SOURCES: dict[str, dict[str, DataSource]] = {
    "en": _train_valid_test(hub("rajpurkar/squad", "plain_text", "train"),
                            hub("rajpurkar/squad", "plain_text", "validation")),
    **{lang: _train_valid_test(_mlqa(lang, "train"), _mlqa(lang, "validation"))
       for lang in ("de", "es")},
    "ar": _one_split(hub("Mostafa3zazi/Arabic_SQuAD", None, "train", prepare=arabic_squad_rows)),
    "ru": {split: hub("kuznetsoffandrey/sberquad", "sberquad", split)
           for split in ("train", "validation", "test")},
    "zh": _local_squad("ChineseSQuAD, SQuAD v1.1 JSON (github.com/pluto-junzeng/ChineseSquad)",
                       "train-v1.1-zh.json", "dev-v1.1-zh.json"),
    "el": {"test": hub("google/xquad", "xquad.el", "validation")},
    "ro": {"test": hub("google/xquad", "xquad.ro", "validation")},
    "cs": _local_squad("Czech SQuAD 2.0 translation (LINDAT/CLARIAH-CZ), SQuAD 2.0 JSON",
                       "squad-2.0-cs/train-v2.0.json", "squad-2.0-cs/dev-v2.0.json"),
    "sk": _local_squad("SK-QuAD (KInIT, nlp.kinit.sk/skquad), SQuAD 2.0 JSON",
                       "sk-quad-220614-train.json", "sk-quad-220614-dev.json"),
    "sl": _local_squad("Slovenian SQuAD 2.0 machine translation (CLARIN.SI), flat SQuAD JSON",
                       "squad2-slo-mt-train.json", "squad2-slo-mt-dev.json"),
    "te": _train_valid_test(local(_TEQUAD, *_TEQUAD_TRAIN, reader=tequad_rows),
                            local(_TEQUAD, *_TEQUAD_TEST, reader=tequad_rows)),
    "sw": _one_split(hub("lightblue/KenSwQuAD", None, "train", prepare=kenswquad_rows)),
    "ur": _train_valid_test(hub("uqa/UQA", None, "train", prepare=uqa_rows),
                            hub("uqa/UQA", None, "validation", prepare=uqa_rows)),
    # Main is a loading script importing the removed datasets.tasks; its raw JSON is read.
    "ml": {"test": hub("ai4bharat/IndicQA", "indicqa.ml", "test", revision="main",
                       patterns=("data/indicqa.ml.json",))},
}
QA_UNAVAILABLE = {
    "bg": "the reference asks facebook/mlqa for mlqa-translate-train.bg, which does not exist "
          "(MLQA has no Bulgarian), and XQuAD has no Bulgarian either; leave qa/bg out",
}

PAPER_LANGUAGES = (
    "ar", "bg", "cs", "de", "el", "en", "es", "ml", "ro", "ru", "sl", "sk", "sw", "te", "ur", "zh",
)
SPLITS = ("train", "validation", "test")

# The reference loads the `wikiann` script; its parquet export keeps the language configs.
NER_SOURCES: dict[str, dict[str, DataSource]] = {
    lang: {split: hub("unimelb-nlp/wikiann", lang, split) for split in SPLITS}
    for lang in PAPER_LANGUAGES
}

XNLI_LANGUAGES = ("ar", "bg", "de", "el", "en", "es", "ru", "sw", "ur", "zh")
_SKANLI = "SK-ANLI, ANLI machine-translated to Slovak (the authors, KInIT), CSV"
_RONLI = "RONLI, Romanian NLI (github.com/Eduard6421/RONLI), JSON"
NLI_SOURCES: dict[str, dict[str, DataSource]] = {
    **{lang: {split: hub("facebook/xnli", lang, split) for split in SPLITS}
       for lang in XNLI_LANGUAGES},
    # claim/evidence are read as hypothesis/premise (the NLI task's column aliases).
    "cs": {split: hub("ctu-aic/anli_cs", None, split) for split in SPLITS},
    # The paper's first author's upload of the CSVs the reference read from
    # ../data/SKANLI/anli_sk_<split>.csv (its raw files on main; those names still work
    # in a local directory). The `translated` column is ignored.
    "sk": {split: hub("ivykopal/anli_sk", None, split, revision="main",
                      patterns=(f"{split}.csv",), local=(f"anli_sk_{split}.csv",), note=_SKANLI)
           for split in SPLITS},
    **{lang: {split: hub("Divyanshu/indicxnli", lang, split) for split in SPLITS}
       for lang in ("te", "ml")},
    "ro": {split: local(_RONLI, f"{split}.json", prepare=ronli_rows) for split in SPLITS},
    "sl": {split: hub("cjvt/si_nli", "public", split, prepare=si_nli_rows) for split in SPLITS},
}

_MULTICLAIM = ("MultiClaim check-worthiness CSVs, a text column per language code and a 0/1 "
               "'claim' column (the authors, KInIT)")
_MULTICLAIM_FILES = {"train": "train-all.csv", "validation": "dev-all.csv", "test": "test-all.csv"}
CHECKWORTHINESS_SOURCES: dict[str, dict[str, DataSource]] = {
    lang: {split: local(_MULTICLAIM, name) for split, name in _MULTICLAIM_FILES.items()}
    for lang in PAPER_LANGUAGES
}
