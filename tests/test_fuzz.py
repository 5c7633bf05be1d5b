"""Fuzzed inputs (issue 7): every loader and parser, given random and malformed input,
either parses or raises the project's own error (:class:`LangTransferError`) with a message
naming the file, and the line where the format has lines; never another exception, never a
hang.

Examples are derandomised (the same every run) and bounded in time twice: hypothesis'
deadline per example, and a hard SIGALRM limit that turns a real hang into a failure.
``LANGTRANSFER_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py -s`` explores further and
prints how many files each loader parsed and rejected.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from langtransfer.errors import DataFormatError, LangTransferError
from langtransfer.inference.scoring import read_predictions, score_predictions
from langtransfer.results.records import read_records
from langtransfer.study.load import load_study_config
from langtransfer.tasks import FIXTURES_DIR, get_task
from langtransfer.tasks.ner import MALFORMED, NERTask, _span_from_data
from langtransfer.training.corpora import read_documents

EXAMPLES = int(os.environ.get("LANGTRANSFER_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
HARD_LIMIT = 30  # seconds: an example running this long is a hang

#: (loader, outcome) -> count, printed at the end of the module (run with -s).
STATS: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    total = sum(STATS.values())
    lines = [f"fuzzed inputs: {total}"]
    for loader in sorted({k for k, _ in STATS}):
        lines.append(f"  {loader}: {STATS[loader, 'parsed']} parsed, "
                     f"{STATS[loader, 'rejected']} rejected")
    print("\n" + "\n".join(lines))
    out = os.environ.get("LANGTRANSFER_FUZZ_REPORT")
    if out:
        Path(out).write_text(json.dumps({f"{k}:{o}": n for (k, o), n in STATS.items()}))


@contextlib.contextmanager
def hard_time_limit(seconds: int = HARD_LIMIT):
    def hung(signum, frame):
        raise TimeoutError(f"example still running after {seconds}s: a hang")

    old = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_names = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def put(folder: Path, suffix: str, content: bytes | str, stem: str = "f") -> Path:
    path = folder / f"{stem}{next(_names)}{suffix}"
    path.write_bytes(
        content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
    )
    return path


def expect_clean(loader: str, load, path: Path, *, names: str | None = None):
    """Run ``load(path)``: it returns, or raises LangTransferError naming the file."""
    with hard_time_limit():
        try:
            result = load(path)
        except LangTransferError as e:
            assert (names or str(path)) in str(e), f"error does not name the file: {e}"
            STATS[loader, "rejected"] += 1
            return e
    STATS[loader, "parsed"] += 1
    return result


@contextlib.contextmanager
def parses_at_least(loader: str, share: float):
    """At least ``share`` of the inputs fuzzed inside must parse: the generators make valid
    and valid-ish inputs too, so a loader that rejects everything (or nearly) fails. The
    shares are about half of what 40 derandomised examples parse."""
    before = STATS[loader, "parsed"], STATS[loader, "rejected"]
    yield
    parsed = STATS[loader, "parsed"] - before[0]
    total = parsed + STATS[loader, "rejected"] - before[1]
    assert total and parsed >= share * total, f"{loader}: {parsed} of {total} inputs parsed"


# --- strategies ---------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 12)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", " ", "B-PER", "I-LOC", "O", "PER: Ann", ":", "$$", "0", "1", "yes",
                       "entailment", "Maybe", "checkworthy", "en", "EN", "de", "null"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
# Hand-picked values that broke JSON readers before: digits beyond Python's int limit,
# nesting deeper than the recursion limit.
HOSTILE_JSON = ["1" * 5000, "[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000]

TASK_KEYS = {
    "qa": ["id", "question", "context", "answers", "language"],
    "ner": ["id", "tokens", "ner_tags", "spans", "language", "langs"],
    "nli": ["id", "premise", "hypothesis", "label", "sentence1", "sentence2", "gold_label",
            "language", "pairID"],
    "checkworthiness": ["id", "text", "claim", "label", "checkworthy", "Text_EN", "en", "lang",
                        "tweet_id", "class_label"],
}


PLAUSIBLE = (
    json_values
    | st.lists(st.text(max_size=6), max_size=6)
    | st.lists(st.integers(-1, 8), max_size=6)
    | st.lists(st.sampled_from(["PER: Ann", "LOC:", "ORG: A$$B", ": x", "X", "B-LOC", "I-PER"]),
               max_size=3)
    | st.fixed_dictionaries({"text": json_values, "answer_start": json_values})
    | st.lists(st.dictionaries(st.sampled_from(["type", "text", "start", "end"]), json_values))
)


def records(task: str):
    keys = st.sampled_from(TASK_KEYS[task]) | st.text(max_size=5)
    return st.dictionaries(keys, PLAUSIBLE, max_size=6)


def fixture_rows(task: str) -> list[dict]:
    """The English test fixture as flat rows (QA's SQuAD JSON flattened, CSV read)."""
    path = next((FIXTURES_DIR / task).glob("en.test.*"))
    return [dict(r.data) for r in get_task(task).read_records(path)]


@st.composite
def valid_ish_records(draw, task: str) -> dict:
    """A fixture row with up to two fields replaced by junk or removed."""
    row = dict(draw(st.sampled_from(fixture_rows(task))))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(row) + TASK_KEYS[task]))
        if draw(st.booleans()):
            row[key] = draw(PLAUSIBLE)
        else:
            row.pop(key, None)
    return row


@st.composite
def mutated(draw, text: str) -> bytes:
    """``text`` as UTF-8, cut, with bytes inserted, or a range deleted (or left as is)."""
    data = text.encode("utf-8")
    op = draw(st.sampled_from(["keep", "cut", "insert", "delete", "flip"]))
    i = draw(st.integers(0, len(data)))
    if op == "cut":
        return data[:i]
    if op == "insert":
        return data[:i] + draw(st.binary(min_size=1, max_size=8)) + data[i:]
    if op == "delete":
        return data[:i] + data[i + draw(st.integers(1, 40)):]
    if op == "flip" and data:
        j = min(i, len(data) - 1)
        return data[:j] + bytes([data[j] ^ draw(st.integers(1, 255))]) + data[j + 1:]
    return data


def fixture_subset(task: str):
    """1-4 rows of the English fixture, as they are: inputs that must parse."""
    return st.lists(st.sampled_from(fixture_rows(task)), min_size=1, max_size=4)


@st.composite
def jsonl_files(draw, task: str) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        return "\n".join(json.dumps(r) for r in draw(fixture_subset(task))).encode()
    lines = draw(st.lists(
        records(task).map(json.dumps)
        | valid_ish_records(task).map(json.dumps)
        | valid_ish_records(task).map(json.dumps)
        | json_values.map(json.dumps)
        | st.text(max_size=30)
        | st.sampled_from(HOSTILE_JSON),
        max_size=6,
    ))
    return draw(mutated("\n".join(lines)))


@st.composite
def delimited_files(draw, task: str, delimiter: str) -> bytes:
    if draw(st.integers(0, 3)) == 0:
        rows = draw(fixture_subset(task))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), delimiter=delimiter,
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().encode()
    cells = st.text(max_size=10) | st.sampled_from(
        ['"', '""', "\n", "\r\n", ",", "\t", "\x00", "1"]
    )
    if draw(st.booleans()):  # fixture rows, some cells replaced
        fixture = fixture_rows(task)
        header = list(fixture[0])
        rows = [[str(v) if draw(st.integers(0, 6)) else draw(cells) for v in r.values()]
                for r in draw(st.lists(st.sampled_from(fixture), min_size=1, max_size=4))]
    else:
        header = draw(st.lists(st.sampled_from(TASK_KEYS[task]) | st.text(max_size=5), max_size=5))
        rows = draw(st.lists(st.lists(cells, max_size=6), max_size=5))
    buf = io.StringIO()
    if draw(st.booleans()):
        writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
        writer.writerows([header, *rows])
    else:  # written by hand: quotes and separators wherever they fall
        buf.write("\n".join(delimiter.join(r) for r in [header, *rows]))
    return draw(mutated(buf.getvalue()))


def squad(draw) -> object:
    """A SQuAD v1.1 structure with any node possibly replaced by junk."""
    junk = json_values

    def maybe(value):
        return draw(st.just(value) | junk) if draw(st.integers(0, 5)) == 0 else value

    qas = [maybe({"id": maybe(f"q{i}"), "question": maybe("Who?"),
                  "answers": maybe([maybe({"text": maybe("Ann"), "answer_start": 0})])})
           for i in range(draw(st.integers(0, 3)))]
    paragraphs = [maybe({"context": maybe("Ann was here."), "qas": maybe(qas)})]
    return maybe(
        {"version": "1.1", "data": maybe([maybe({"title": "t", "paragraphs": maybe(paragraphs)})])}
    )


@st.composite
def squad_files(draw) -> bytes:
    kind = draw(st.sampled_from(["structure", "fixture", "json", "hostile"]))
    if kind == "structure":
        return json.dumps(squad(draw)).encode()
    if kind == "fixture":
        return draw(mutated((FIXTURES_DIR / "qa" / "en.test.json").read_text(encoding="utf-8")))
    if kind == "hostile":
        return draw(st.sampled_from(HOSTILE_JSON)).encode()
    return draw(mutated(json.dumps(draw(json_values))))


# --- task data files ---------------------------------------------------------------------


def load_task(task: str):
    return lambda path: get_task(task).load("en", "test", path=path)


def check_examples(result, task: str) -> None:
    if isinstance(result, LangTransferError):
        return
    assert result, "a load returns at least one example or raises"
    for ex in result:
        assert isinstance(ex.id, str) and isinstance(ex.input, str) and isinstance(ex.target, str)
        if task in ("nli", "checkworthiness"):  # the parser reads the target back to the gold
            assert get_task(task).parse(ex.target) == ex.gold


@FUZZ
@given(content=squad_files())
def _squad_json(workdir, content):
    path = put(workdir, ".json", content)
    check_examples(expect_clean("squad json", load_task("qa"), path), "qa")


def test_squad_json(workdir):
    with parses_at_least("squad json", 0.05):
        _squad_json(workdir=workdir)


@pytest.mark.parametrize("task", ["qa", "ner", "nli", "checkworthiness"])
def test_jsonl(workdir, task):
    @FUZZ
    @given(content=jsonl_files(task))
    def run(content):
        path = put(workdir, ".jsonl", content)
        check_examples(expect_clean("jsonl", load_task(task), path), task)

    with parses_at_least("jsonl", 0.15):
        run()


@pytest.mark.parametrize(("task", "suffix"), [("nli", ".csv"), ("nli", ".tsv"),
                                              ("checkworthiness", ".csv")])
def test_csv_and_tsv(workdir, task, suffix):
    @FUZZ
    @given(content=delimited_files(task, "\t" if suffix == ".tsv" else ","))
    def run(content):
        path = put(workdir, suffix, content)
        check_examples(expect_clean("csv/tsv", load_task(task), path), task)

    with parses_at_least("csv/tsv", 0.1):
        run()


@FUZZ
@given(content=st.binary(max_size=300) | mutated("PAR1" + "x" * 40 + "PAR1"))
def test_parquet_bytes(workdir, content):
    path = put(workdir, ".parquet", content)
    expect_clean("parquet", load_task("nli"), path)


@FUZZ
@given(bad_at=st.integers(0, 5), n=st.integers(1, 6),
       junk=st.sampled_from(['{"premise": ', "not json", "[1, 2]", "1" * 5000, '"text"']))
def test_jsonl_errors_name_the_line(workdir, bad_at, n, junk):
    good = [json.dumps({"premise": f"p{i}", "hypothesis": "h", "label": i % 3}) for i in range(n)]
    bad_at = min(bad_at, n)
    lines = [*good[:bad_at], junk, *good[bad_at:]]
    path = put(workdir, ".jsonl", "\n".join(lines))
    error = expect_clean("jsonl", load_task("nli"), path)
    assert isinstance(error, DataFormatError) and error.line == bad_at + 1, error


@FUZZ
@given(
    bad_at=st.integers(0, 5), n=st.integers(1, 6), fields=st.integers(1, 5).filter(lambda f: f != 3)
)
def test_csv_errors_name_the_line(workdir, bad_at, n, fields):
    rows = [f'"premise {i}, quoted",hypothesis {i},{i % 3}' for i in range(n)]
    bad_at = min(bad_at, n)
    rows.insert(bad_at, ",".join(["x"] * fields))
    path = put(workdir, ".csv", "\n".join(["premise,hypothesis,label", *rows]))
    error = expect_clean("csv/tsv", load_task("nli"), path)
    assert isinstance(error, DataFormatError) and error.line == bad_at + 2, error  # + header


# --- parsers of generated text and of NER spans ----------------------------------------------


@FUZZ
@given(text=st.text() | st.sampled_from(["PER: A$$LOC: B", "$$$$", ":", "Yes.", "not checkworthy"]))
def test_generated_text_parsers_never_raise(text):
    ner = get_task("ner").parse(text)
    assert isinstance(ner, tuple) and all(isinstance(k, str) and isinstance(t, str) for k, t in ner)
    assert all(t for k, t in ner if k != MALFORMED)
    assert get_task("qa").parse(text) == text.strip()
    for name in ("nli", "checkworthiness"):
        task = get_task(name)
        assert task.parse(text) in (None, *task.classes)
    STATS["generated text", "parsed"] += 1


@FUZZ
@given(value=json_values)
def test_prediction_values_coerce_or_raise_value_error(value):
    for name in ("qa", "ner", "nli", "checkworthiness"):
        try:
            get_task(name).coerce(value)
        except ValueError:
            STATS["prediction values", "rejected"] += 1
        else:
            STATS["prediction values", "parsed"] += 1


# Entity text may not contain the separator `$$`, nor start or end with `$`: `A$` + `$$` +
# `B` reads as `A` + `$$` + `$B` (the paper's target format cannot tell them apart).
span_texts = st.text(min_size=1).filter(
    lambda t: t.strip() and "$$" not in t and not t.strip().startswith("$")
    and not t.strip().endswith("$")
)


@FUZZ
@given(spans=st.lists(st.tuples(st.sampled_from(["PER", "ORG", "LOC", "misc"]), span_texts),
                      max_size=5))
def test_ner_targets_parse_back(spans):
    task = NERTask()
    target = "$$".join(f"{k}: {t}" for k, t in spans)
    expected = tuple((k.upper(), " ".join(t.split())) for k, t in spans)
    assert task.parse(target) == expected


@FUZZ
@given(span=json_values | st.text()
       | st.builds("{}:{}".format, st.sampled_from(["PER", "loc", " ", ""]), st.text(max_size=8))
       | st.fixed_dictionaries({"type": st.sampled_from(["PER", "", 3]),
                                "text": st.text(max_size=6) | st.none()})
       | st.fixed_dictionaries({"type": st.just("LOC"), "start": st.integers(-1, 6) | st.booleans(),
                                "end": st.integers(-1, 6) | st.text(max_size=2)}),
       tokens=st.lists(st.text(max_size=4), max_size=5))
def test_ner_span_strings_parse_or_raise_value_error(span, tokens):
    try:
        kind, text = _span_from_data(span, tokens)
    except ValueError:
        STATS["ner spans", "rejected"] += 1
        return
    assert kind and text and "$$" not in text
    STATS["ner spans", "parsed"] += 1


# --- predictions files ------------------------------------------------------------------------


@st.composite
def prediction_files(draw) -> bytes:
    line = (
        st.fixed_dictionaries({"id": st.sampled_from(["0", "1", 2, "x"]) | json_values,
                               "prediction": json_values}).map(json.dumps)
        | json_values.map(json.dumps)
        | st.text(max_size=20)
        | st.sampled_from(HOSTILE_JSON)
    )
    return draw(mutated("\n".join(draw(st.lists(line, max_size=5)))))


@pytest.mark.parametrize("task", ["ner", "nli"])
def test_predictions_files(workdir, task):
    gold = get_task(task).load("en", "test", source="fixtures")
    for i, ex in enumerate(gold):
        object.__setattr__(ex, "id", str(i))  # ids the generated files use

    @FUZZ
    @given(content=prediction_files())
    def run(content):
        path = put(workdir, ".jsonl", content)

        def load(p):
            predictions = read_predictions(p, task=task)
            return score_predictions(task, gold, predictions, source=p)

        expect_clean("predictions", load, path)

    with parses_at_least("predictions", 0.1):
        run()


# --- study YAML, language files, corpora, results, manifests -----------------------------------

STUDY_KEYS = ["output", "model", "sources", "targets", "tasks", "configurations", "seed",
              "sequence_length", "corpus", "max_documents", "validation_documents", "data",
              "max_train_examples", "max_eval_examples", "language_training", "task_training",
              "evaluation"]
VALID_STUDY = {
    "output": "out", "model": "tiny", "targets": ["sk", "de"], "tasks": ["nli"],
    "configurations": ["base", "slp+ta"], "corpus": "fixtures", "data": "fixtures",
    "language_training": {"prompt": {"max_steps": 4, "num_tokens": 4}},
    "task_training": {"adapter": {"max_steps": 4, "reduction_factor": 8}},
    "evaluation": {"batch_size": 8, "max_new_tokens": 6},
}


@st.composite
def study_files(draw) -> bytes:
    kind = draw(st.sampled_from(["valid-ish", "random keys", "mutated", "text"]))
    if kind == "valid-ish":
        config = dict(VALID_STUDY)
        for key in draw(st.lists(st.sampled_from(STUDY_KEYS), max_size=3)):
            config[key] = draw(json_values)
        for kind_key in draw(st.lists(st.sampled_from(["prompt", "adapter", "lora"]), max_size=2)):
            table = draw(st.sampled_from(["language_training", "task_training"]))
            config[table] = {kind_key: draw(st.dictionaries(
                st.sampled_from(["max_steps", "learning_rate", "num_tokens", "batch_size",
                                 "optimizer", "reduction_factor", "config", "init", "seed",
                                 "report_to", "bf16", "skip_nonfinite"]), json_values, max_size=3))}
        return yaml.safe_dump(config).encode()
    if kind == "random keys":
        config = draw(st.dictionaries(st.sampled_from(STUDY_KEYS) | st.text(max_size=4),
                                      json_values, max_size=6))
        return yaml.safe_dump(config).encode()
    if kind == "mutated":
        return draw(mutated(yaml.safe_dump(VALID_STUDY)))
    return draw(
        st.text(max_size=80)
        | st.sampled_from(
            [
                "a: &a [1,2]\nb: [*a,*a,*a]\n",
                "- - - - [",
                "{output: x, seed: .inf}",
                "!!python/object:os.system {}",
                "output: x\ntargets: [sk]\ntasks: [nli]\ndata: &d {a: [*d]}\n",
            ]
        )
    ).encode()


@FUZZ
@given(content=study_files())
def _study_yaml(workdir, content):
    path = put(workdir, ".yaml", content)
    config = expect_clean("study yaml", load_study_config, path)
    if not isinstance(config, LangTransferError):
        from langtransfer.study.run import plan

        with hard_time_limit():
            config.fingerprint()
            plan(config)  # a config that loads can be planned


def test_study_yaml(workdir):
    with parses_at_least("study yaml", 0.02):
        _study_yaml(workdir=workdir)


@pytest.fixture
def language_registry():
    from langtransfer import languages

    saved = dict(languages._REGISTRY)
    yield
    languages._REGISTRY.clear()
    languages._REGISTRY.update(saved)


@st.composite
def language_files(draw) -> tuple[str, bytes]:
    entry = st.dictionaries(
        st.sampled_from(["code", "name", "script", "family", "wikipedia_max_articles"])
        | st.text(max_size=4) | st.integers(0, 3),
        json_values | st.sampled_from(["xx", "sk", "Latin", "Slovak", "qq-new", "Qqish"]),
        max_size=6,
    )
    valid = st.fixed_dictionaries(
        {"code": st.sampled_from(["qq", "qq-x", "zz"]), "name": st.sampled_from(["Qqish", "Zzish"]),
         "script": st.just("Latin")},
        optional={"family": st.text(min_size=1, max_size=5),
                  "wikipedia_max_articles": st.integers(1, 5) | st.none()},
    )
    data = draw(st.lists(valid | entry, max_size=3) | json_values)
    suffix = draw(st.sampled_from([".yaml", ".json", ".yml", ".yaml", ".json", ".txt"]))
    text = json.dumps(data) if suffix == ".json" else yaml.safe_dump(data)
    return suffix, text.encode() if draw(st.booleans()) else draw(mutated(text))


def test_language_files(workdir, language_registry):
    from langtransfer import languages
    from langtransfer.languages import load_language_file

    saved = dict(languages._REGISTRY)

    @FUZZ
    @given(file=language_files())
    def run(file):
        suffix, content = file
        languages._REGISTRY.clear()  # each example starts from the built-in languages
        languages._REGISTRY.update(saved)
        expect_clean("language file", load_language_file, put(workdir, suffix, content))

    with parses_at_least("language file", 0.05):
        run()


@FUZZ
@given(content=st.binary(max_size=300) | st.text(max_size=200).map(str.encode),
       suffix=st.sampled_from([".txt", ".jsonl"]))
@example(content=b'{"text": ' + b"1" * 5000 + b"}\n", suffix=".jsonl")
@example(content=b"ok\n\xff\xfe broken\n", suffix=".txt")
def _corpus_files(workdir, content, suffix):
    path = put(workdir, suffix, content)
    docs = expect_clean("corpus", read_documents, path)
    if not isinstance(docs, LangTransferError):
        assert all(isinstance(d, str) and d.strip() for d in docs)


def test_corpus_files(workdir):
    with parses_at_least("corpus", 0.2):
        _corpus_files(workdir=workdir)


VALID_RECORD = {
    "task": "nli", "configuration": "base", "source_language": "en", "target_language": "sk",
    "metrics": {"accuracy": 50.0}, "primary_metric": "accuracy", "n_examples": 2,
    "n_unparseable": 0, "n_truncated": 0, "model": {"name": "tiny"},
    "representations": {"language": None, "task": None}, "settings_hash": "abc", "seed": 1,
}


@FUZZ
@given(
    content=st.builds(json.dumps, json_values)
    | st.sampled_from(HOSTILE_JSON)
    | st.builds(
        lambda m, n, u: json.dumps(
            {**VALID_RECORD, "metrics": m, "n_examples": n, "n_unparseable": u}
        ),
        st.dictionaries(
            st.sampled_from(["accuracy", "f1", "macro_f1"]), st.floats(0, 100), min_size=1
        ).map(lambda m: {"accuracy": 1.0, **m}),
        st.integers(0, 9),
        st.integers(0, 9),
    )
    | st.builds(
        lambda r: json.dumps({**VALID_RECORD, **r}),
        st.dictionaries(
            st.sampled_from(
                sorted(
                    [
                        "task",
                        "configuration",
                        "metrics",
                        "primary_metric",
                        "n_examples",
                        "representations",
                        "seed",
                        "settings_hash",
                        "model",
                    ]
                )
            ),
            json_values,
            max_size=2,
        ),
    )
)
def _result_records(workdir, content):
    study = workdir / f"study{next(_names)}"
    path = study / "results" / "nli" / "base" / "en__sk.json"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    expect_clean("result record", read_records, study, names=str(path))


def test_result_records(workdir):
    with parses_at_least("result record", 0.2):
        _result_records(workdir=workdir)


# --- representation manifests ---------------------------------------------------------------

MANIFEST_KEYS = ["format", "format_version", "kind", "role", "language", "task", "base_model",
                 "base_model.d_model", "base_model.model_type", "prompt", "prompt.num_tokens",
                 "prompt.init", "adapter", "adapter.config", "adapter.reduction_factor",
                 "training", "settings_hash"]


@pytest.fixture(scope="module")
def saved_representations(tmp_path_factory):
    from langtransfer.base.loading import load_base
    from langtransfer.composition.composed import compose
    from langtransfer.representations import PromptConfig, new_adapter, new_prompt

    root = tmp_path_factory.mktemp("reps")
    base, tok = load_base("tiny")
    slp = new_prompt(
        "language", base, tok, PromptConfig(num_tokens=4, init_text="x"), language="sk"
    )
    composed = compose(base, "slp+ta", language=slp, task=new_adapter("task", task="nli"))
    composed.save("language", root / "slp")
    composed.save("task", root / "ta")
    fresh, _ = load_base("tiny")
    return root, fresh


@FUZZ
@given(
    which=st.sampled_from(["slp", "ta"]),
    changes=st.lists(st.tuples(st.sampled_from(MANIFEST_KEYS), json_values | scalars), max_size=3),
)
def _representation_manifests(saved_representations, which, changes):
    import shutil

    from langtransfer.composition.composed import compose
    from langtransfer.representations import load_representation

    root, base = saved_representations
    directory = root / f"case{next(_names)}"
    shutil.copytree(root / which, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    for key, value in changes:
        target, *rest = key.split(".")
        if rest and isinstance(manifest.get(target), dict):
            manifest[target][rest[0]] = value
        else:
            manifest[target] = value
    (directory / "manifest.json").write_text(json.dumps(manifest))
    rep = expect_clean("representation manifest", load_representation, directory)
    if isinstance(rep, LangTransferError):
        return
    configuration = rep.short
    with hard_time_limit():
        try:  # what loads must compose, or fail as the project's own error
            compose(base, configuration, **{rep.role: rep})
        except LangTransferError as e:
            assert str(directory) in str(e) or "base model" in str(e), e



def test_representation_manifests(saved_representations):
    with parses_at_least("representation manifest", 0.05):
        _representation_manifests(saved_representations=saved_representations)
