"""Registry, data sources (hub, local files, shipped fixtures) and loader errors."""

from __future__ import annotations

import json
import re

import pytest

from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.tasks import (
    ClassificationTask,
    Example,
    Task,
    all_tasks,
    get_task,
    register_task,
)
from langtransfer.tasks import registry as registry_module

BUILTINS = ("qa", "ner", "nli", "checkworthiness")
FIXTURE_LANGS = ("en", "sk", "ru", "de")
CYRILLIC = re.compile("[\u0400-\u04ff]")


def test_registry_lists_and_finds_the_builtins():
    assert [t.name for t in all_tasks()][:4] == list(BUILTINS)
    assert get_task("QA ") is get_task("qa")
    assert get_task(get_task("ner")) is get_task("ner")
    with pytest.raises(UnknownNameError) as err:
        get_task("pos")
    assert isinstance(err.value, KeyError)
    assert "'pos'" in str(err.value) and "checkworthiness, ner, nli, qa" in str(err.value)


class Sentiment(ClassificationTask):
    """A user's task: the registry and loaders must work for it unchanged."""

    name = "sentiment"
    prompt_init_text = "Rate the review in {Language}:"
    classes = ("negative", "positive")
    label_words = {"negative": "bad", "positive": "good"}
    columns = {"review": ("review",), "label": ("stars_ok",)}

    def format_input(self, raw):
        return "review: " + self.canonical(raw)["review"]

    def parse(self, generated):
        word = generated.strip().lower()
        return next((c for c, w in self.label_words.items() if w == word), None)


@pytest.fixture
def sentiment():
    task = Sentiment()
    try:
        yield register_task(task)
    finally:
        registry_module._REGISTRY.pop("sentiment", None)


def test_users_register_their_own_task(sentiment, tmp_path):
    assert get_task("sentiment") is sentiment
    assert register_task(sentiment) is sentiment  # the same object again: no-op
    with pytest.raises(LangTransferError, match="already registered"):
        register_task(Sentiment())
    replacement = register_task(Sentiment(), replace=True)
    assert get_task("sentiment") is replacement

    path = tmp_path / "en.test.jsonl"
    path.write_text('{"review": "Great", "stars_ok": 1}\n{"review": "Meh", "stars_ok": 0}\n',
                    encoding="utf-8")
    examples = get_task("sentiment").load("en", "test", tmp_path)  # a directory
    assert [(e.input, e.target, e.gold) for e in examples] == [
        ("review: Great", "good", "positive"), ("review: Meh", "bad", "negative")]
    m = replacement.score([replacement.parse("good"), replacement.parse("??")],
                          [e.gold for e in examples])
    assert m["accuracy"] == 50.0 and m["n_unparseable"] == 1


@pytest.mark.parametrize("bad", [object(), Task()])
def test_register_rejects_non_tasks_and_bad_names(bad):
    with pytest.raises(LangTransferError):
        register_task(bad)


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("lang", FIXTURE_LANGS)
def test_fixtures_load_and_round_trip(name, lang):
    task = get_task(name)
    test = task.load(lang, "test", source="fixtures")
    assert 20 <= len(test) <= 25
    assert len({e.id for e in test}) == len(test)
    assert all(isinstance(e, Example) and e.language == lang for e in test)
    if lang == "ru":
        assert all(CYRILLIC.search(e.input) for e in test)
    parsed = [task.parse(e.target) for e in test]
    if name == "qa":
        assert all(p == e.gold[0] for p, e in zip(parsed, test, strict=True))
    else:
        assert all(p == e.gold for p, e in zip(parsed, test, strict=True))
    m = task.score(parsed, [e.gold for e in test])
    assert m[task.primary_metric] == 100.0


@pytest.mark.parametrize("name", BUILTINS)
def test_fixture_test_sets_are_parallel_and_train_sets_exist(name):
    task = get_task(name)
    ids = {lang: [e.id for e in task.load(lang, "test", source="fixtures")]
           for lang in FIXTURE_LANGS}
    assert ids["sk"] == ids["ru"] == ids["en"] == ids["de"]
    golds = {lang: [e.gold for e in task.load(lang, "test", source="fixtures")]
             for lang in FIXTURE_LANGS}
    if name in ("nli", "checkworthiness"):
        assert golds["sk"] == golds["ru"] == golds["en"]
        assert len(set(golds["en"])) == len(task.classes)  # every class occurs
    for lang in ("en", "de"):
        assert len(task.load(lang, "train", source="fixtures")) >= 40
    with pytest.raises(LangTransferError, match="available splits: test"):
        task.load("sk", "train", source="fixtures")


def test_fixture_ner_has_sentences_without_entities_and_repeated_spans():
    test = get_task("ner").load("en", "test", source="fixtures")
    assert any(e.target == "" and e.gold == () for e in test)
    assert any(len(set(e.gold)) < len(e.gold) for e in test)


def test_unknown_split_source_and_fixture_language():
    qa = get_task("qa")
    with pytest.raises(UnknownNameError, match="split of task qa 'dev'; valid: test, train"):
        qa.load("en", "dev")
    with pytest.raises(UnknownNameError, match="data source 'web'"):
        qa.load("en", "test", source="web")
    with pytest.raises(UnknownNameError, match="de, en, ru, sk"):
        qa.load("xx", "test", source="fixtures")


def test_paper_sources_name_what_exists():
    qa = get_task("qa")
    with pytest.raises(LangTransferError, match="no source for 'bg'.*mlqa-translate-train.bg"):
        qa.load("bg", "test")  # the reference's QA source for Bulgarian does not exist
    with pytest.raises(UnknownNameError) as err:
        qa.load("xx", "test")
    assert "language for task qa 'xx'" in str(err.value) and "sk" in err.value.valid
    with pytest.raises(LangTransferError, match="no train data for 'el'; available splits: test"):
        qa.load("el", "train")
    with pytest.raises(LangTransferError, match="SK-QuAD.*sk-quad-220614-dev.json.*path="):
        qa.load("sk", "test")
    with pytest.raises(LangTransferError, match="MultiClaim.*train-all.csv"):
        get_task("checkworthiness").load("en", "train")
    assert set(get_task("ner").sources) >= {"sk", "ru", "te", "zh"}


def test_missing_columns_are_all_named(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text('{"premise": "p"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        get_task("nli").load("en", "test", path)
    assert "hypothesis" in str(err.value) and "label" in str(err.value)
    assert err.value.line == 1
    ner = tmp_path / "ner.jsonl"
    ner.write_text('{"tokens": ["a"]}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match="ner_tags or spans"):
        get_task("ner").load("en", "test", ner)


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "en.jsonl"
    path.write_text('{"premise": "p", "hypothesis": "h", "label": 0}\n\n{"premise": "p",\n',
                    encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        get_task("nli").load("en", "test", path)
    assert err.value.line == 3 and str(path) in str(err.value)
    path.write_text("[1, 2]\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="expected a JSON object"):
        get_task("nli").load("en", "test", path)


def test_wrong_extension_and_missing_file(tmp_path):
    path = tmp_path / "en.csv"
    path.write_text("a\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="reads .json, .jsonl, .parquet"):
        get_task("qa").load("en", "test", path)
    with pytest.raises(LangTransferError, match="does not exist"):
        get_task("qa").load("en", "test", tmp_path / "nope.json")
    # a near miss of a source name ('fixture', as train-language's --corpus spells it)
    # is a missing file whose error says what --data takes
    with pytest.raises(LangTransferError, match=r"data file fixture does not exist .*'fixtures'"):
        get_task("nli").load("en", "train", "fixture")


def test_repeated_ids_are_kept_apart(tmp_path):
    path = tmp_path / "en.jsonl"
    row = {"id": "x", "premise": "p", "hypothesis": "h", "label": 0}
    path.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    assert [e.id for e in get_task("nli").load("en", "test", path)] == ["x", "x#2"]


def test_prompt_init_texts_are_the_papers():
    assert get_task("qa").prompt_init("Russian") == "Answer the question in Russian language:"
    assert get_task("ner").prompt_init("Slovak") == (
        "Identify ner tags (ORG, PER, LOC) in the text in Slovak:")
    assert get_task("checkworthiness").prompt_init("German") == (
        "Determine whether a given claim in German is checkworthy:")
    assert not get_task("qa").label_words and not get_task("ner").label_words
    assert list(get_task("nli").label_words.values()) == ["Yes", "Maybe", "No"]
