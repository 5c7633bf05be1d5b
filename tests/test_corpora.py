"""Unlabelled corpora: local formats, fixtures, validation slices, streamed Wikipedia."""

from __future__ import annotations

import dataclasses
import json
import unicodedata

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langtransfer import corpora, languages
from langtransfer.corpora import Corpus, fixture_path, load_corpus, read_documents
from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError

DOCS = [f"Sentence number {i} about the river." for i in range(20)]


def write_lines(path, lines, newline="\n"):
    path.write_bytes(newline.join(lines).encode("utf-8"))
    return path


# --- .txt ---------------------------------------------------------------------------


def test_txt_one_document_per_line(tmp_path):
    path = write_lines(tmp_path / "c.txt", [*DOCS, "", ""])  # trailing blanks: still lines
    corpus = load_corpus(path, "sk", validation_size=4, seed=1)
    assert isinstance(corpus, Corpus) and not corpus.streaming
    assert len(corpus.train) == 16 and len(corpus.validation) == 4
    assert sorted(corpus.train + corpus.validation) == sorted(DOCS)
    assert corpus.train == [d for d in DOCS if d in corpus.train]  # file order kept
    assert corpus.language.code == "sk" and corpus.source == str(path)


def test_txt_blank_lines_separate_paragraphs(tmp_path):
    lines = ["", "First line one.", "First line two.", "", "  ", "", "Second.", "\t", "Third a."]
    lines += ["Third b.", "Third c.", ""]
    path = write_lines(tmp_path / "p.txt", lines, newline="\r\n")
    assert read_documents(path) == [
        "First line one.\nFirst line two.",
        "Second.",
        "Third a.\nThird b.\nThird c.",
    ]


def test_txt_crlf_and_bom_one_per_line(tmp_path):
    path = tmp_path / "w.txt"
    path.write_bytes(b"\xef\xbb\xbfAlpha\r\nBeta\r\nGamma\r\n")
    assert read_documents(path) == ["Alpha", "Beta", "Gamma"]


def test_txt_not_utf8_names_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("ok\nstill ok\nna\xefve\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin1\.txt:3: not UTF-8"):
        read_documents(path)


# --- .jsonl -------------------------------------------------------------------------


def test_jsonl_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    rows = [{"id": i, "text": d} for i, d in enumerate(DOCS[:5])]
    rows.insert(2, {"id": 99, "text": None})
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)
    path.write_text(body + "\n\n", encoding="utf-8")
    assert read_documents(path) == DOCS[:5]
    assert read_documents(path, max_documents=2) == DOCS[:2]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ('{"text": "unterminated', "c.jsonl:3: invalid JSON"),
        ('["a list"]', "c.jsonl:3: expected a JSON object with a 'text' field"),
        ('{"body": "x", "id": 3}', "c.jsonl:3: no 'text' field (fields: body, id)"),
        ('{"text": 42}', "c.jsonl:3: 'text' must be a string, got int"),
    ],
)
def test_jsonl_bad_line_names_file_and_line(tmp_path, bad_line, message):
    path = tmp_path / "c.jsonl"
    path.write_text(f'{{"text": "a"}}\n\n{bad_line}\n{{"text": "b"}}\n', encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        load_corpus(path, "en")
    assert message in str(info.value) and info.value.line == 3


# --- .parquet -----------------------------------------------------------------------


def test_parquet_text_column(tmp_path):
    path = tmp_path / "c.parquet"
    texts = [*DOCS[:6], None]
    pq.write_table(pa.table({"id": list(range(7)), "text": texts}), path)
    corpus = load_corpus(path, "de", validation_size=0.5, seed=0)
    assert len(corpus.validation) == 3 and len(corpus.train) == 3
    assert sorted(corpus.train + corpus.validation) == sorted(DOCS[:6])


def test_parquet_missing_column_lists_columns(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1], "body": ["x"]}), path)
    with pytest.raises(DataFormatError, match=r"no column 'text'; columns present: id, body"):
        load_corpus(path, "de")
    assert read_documents(path, text_field="body") == ["x"]


def test_parquet_wrong_type_and_garbage(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), path)
    with pytest.raises(DataFormatError, match="column 'text' holds int64, expected strings"):
        read_documents(path)
    garbage = tmp_path / "g.parquet"
    garbage.write_bytes(b"this is not parquet at all")
    with pytest.raises(DataFormatError, match=r"g\.parquet: not a readable Parquet file"):
        read_documents(garbage)


# --- errors shared by all sources ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content"),
    [("e.txt", ""), ("w.txt", "  \n\n\t\n"), ("n.jsonl", '{"text": null}\n{"text": "  "}\n')],
)
def test_empty_corpus_is_an_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(LangTransferError, match=f"corpus {path} contains no text"):
        load_corpus(path, "sk")


def test_missing_file_directory_and_extension(tmp_path):
    with pytest.raises(LangTransferError, match=r"corpus file .*nothere\.txt does not exist"):
        load_corpus(tmp_path / "nothere.txt", "sk")
    with pytest.raises(LangTransferError, match="is a directory"):
        load_corpus(tmp_path, "sk")
    csv = tmp_path / "c.csv"
    csv.write_text("text\nx\n")
    with pytest.raises(DataFormatError, match=r"'\.csv'; supported: \.txt, \.jsonl, \.parquet"):
        load_corpus(csv, "sk")
    with pytest.raises(UnknownNameError, match="unknown language 'xx'"):
        load_corpus(csv, "xx")


def test_validation_slice_disjoint_deterministic_and_sized(tmp_path):
    path = write_lines(tmp_path / "c.txt", DOCS)
    a = load_corpus(path, "sk", seed=3)
    assert len(a.validation) == 2 and len(a.train) == 18  # default: 10%
    assert not set(a.train) & set(a.validation)
    assert set(a.train) | set(a.validation) == set(DOCS)
    assert load_corpus(path, "sk", seed=3) == a
    others = {tuple(load_corpus(path, "sk", seed=s).validation) for s in range(4, 10)}
    assert len(others | {tuple(a.validation)}) > 1
    assert load_corpus(path, "sk", validation_size=0).validation == []
    capped = load_corpus(path, "sk", max_documents=5, validation_size=1)
    assert set(capped.train + capped.validation) == set(DOCS[:5])
    with pytest.raises(LangTransferError, match="leaves none for training"):
        load_corpus(path, "sk", validation_size=20)
    with pytest.raises(LangTransferError, match=r"fraction must be in \(0, 1\)"):
        load_corpus(path, "sk", validation_size=1.5)
    with pytest.raises(LangTransferError, match="max_documents must be a positive integer"):
        load_corpus(path, "sk", max_documents=0)


# --- fixtures -----------------------------------------------------------------------

SCRIPT_OF = {"en": "LATIN", "sk": "LATIN", "de": "LATIN", "es": "LATIN", "ru": "CYRILLIC"}
SCRIPT_OF |= {"el": "GREEK", "ar": "ARABIC", "zh": "CJK"}


@pytest.mark.parametrize("code", sorted(SCRIPT_OF))
def test_fixture_text_is_in_its_script(code):
    docs = read_documents(fixture_path(code))
    assert 40 <= len(docs) <= 80 and len(set(docs)) == len(docs)
    letters = [c for c in "".join(docs) if c.isalpha()]
    in_script = sum(unicodedata.name(c, "").startswith(SCRIPT_OF[code]) for c in letters)
    assert in_script / len(letters) > 0.95


def test_fixture_source_and_missing_fixture():
    corpus = load_corpus("fixture", "Slovak", validation_size=5)
    assert len(corpus.validation) == 5 and len(corpus.train) >= 35
    assert any("Bratislava" in d for d in corpus.train + corpus.validation)
    with pytest.raises(UnknownNameError, match="unknown fixture language 'te'; valid: ar, de"):
        load_corpus("fixture", "te")


# --- Wikipedia (the hub mocked by a local streaming dataset) ------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    rows = [f"Article {i}." if i % 7 != 3 else "   " for i in range(40)]

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        if kwargs.get("streaming") is not True:
            raise AssertionError("Wikipedia must be streamed, never downloaded whole")
        table = {"id": [str(i) for i in range(40)], "title": ["t"] * 40, "text": rows}
        return datasets.Dataset.from_dict(table).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, [r for r in rows if r.strip()]


def test_wikipedia_is_streamed_with_the_language_config(fake_hub):
    calls, texts = fake_hub
    corpus = load_corpus("wikipedia", "sk", validation_size=5)
    assert calls == [
        (("wikimedia/wikipedia", "20231101.sk"), {"split": "train", "streaming": True})
    ]
    assert corpus.streaming and corpus.max_documents is None
    assert corpus.source == "wikimedia/wikipedia 20231101.sk"
    assert corpus.validation == texts[:5]  # a stream's validation slice is its head
    assert list(corpus.train) == texts[5:]
    assert list(corpus.train) == texts[5:]  # re-iterable: a second epoch streams again


def test_wikipedia_english_cap(fake_hub, monkeypatch):
    calls, texts = fake_hub
    assert load_corpus("wikipedia", "en", validation_size=2).max_documents == 1_000_000
    # The default slice of a stream is at most a fixed count, not 10% of 1M articles.
    monkeypatch.setattr(corpora, "DEFAULT_STREAM_VALIDATION_DOCUMENTS", 3)
    assert len(load_corpus("wikipedia", "en").validation) == 3
    assert calls[-1][0] == ("wikimedia/wikipedia", "20231101.en")
    en = languages.get_language("en")
    monkeypatch.setitem(
        languages._REGISTRY, "en", dataclasses.replace(en, wikipedia_max_articles=10)
    )
    corpus = load_corpus("wikipedia", "English", validation_size=2)
    raw_first_10 = [f"Article {i}." for i in range(10) if i % 7 != 3]
    assert corpus.max_documents == 10
    assert corpus.validation + list(corpus.train) == raw_first_10
    assert load_corpus("wikipedia", "en").validation == raw_first_10[:1]  # 10% of the cap
    # max_documents caps other languages too, and the smaller cap wins for English.
    assert load_corpus("wikipedia", "en", max_documents=4, validation_size=1).max_documents == 4
    de = load_corpus("wikipedia", "de", max_documents=12, validation_size=0.25)
    assert len(de.validation) == 3 and de.max_documents == 12


def test_wikipedia_errors(fake_hub, monkeypatch):
    with pytest.raises(LangTransferError, match="stream's size is unknown"):
        load_corpus("wikipedia", "de", validation_size=0.1)
    with pytest.raises(LangTransferError, match="all went to validation"):
        load_corpus("wikipedia", "de", validation_size=1000)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LangTransferError, match=r"cannot stream .*20231101\.sw.*no network"):
        load_corpus("wikipedia", "sw")

    def empty(*args, **kwargs):
        return datasets.Dataset.from_dict({"text": ["", " "]}).to_iterable_dataset()

    monkeypatch.setattr(datasets, "load_dataset", empty)
    with pytest.raises(LangTransferError, match="yielded no text"):
        load_corpus("wikipedia", "sw")
