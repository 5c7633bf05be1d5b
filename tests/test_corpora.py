"""Unlabelled corpora: local formats, fixtures, validation slices, streamed Wikipedia."""

from __future__ import annotations

import dataclasses
import json
import unicodedata

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from langtransfer import languages
from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.training import corpora
from langtransfer.training.corpora import Corpus, fixture_path, load_corpus, read_documents

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
    # The study's spelling (corpus: fixtures) names the same source.
    plural = load_corpus("fixtures", "Slovak", validation_size=5)
    assert (plural.source, plural.train, plural.validation) == (
        corpus.source, corpus.train, corpus.validation)


def test_a_study_plans_the_same_language_jobs_from_either_fixture_spelling(tmp_path):
    import yaml
    from test_study_jobs import BASE

    from langtransfer.study.jobs import plan
    from langtransfer.study.load import load_study_config

    hashes = []
    for spelling in ("fixtures", "fixture"):
        path = tmp_path / f"{spelling}.yaml"
        path.write_text(yaml.safe_dump({**BASE, "corpus": spelling,
                                        "output": str(tmp_path / "out")}), encoding="utf-8")
        hashes.append({a.id: a.hash for a in plan(load_study_config(path))
                       if a.stage == "language"})
    assert hashes[0] and hashes[0] == hashes[1]


# --- Wikipedia (a local mirror laid out as the hub serves the dump, read by datasets) ----

WIKI = "wikimedia/wikipedia"


def _article(i):
    return f"Article {i}." if i % 7 != 3 else "   "  # some empty articles, as dumps have


@pytest.fixture
def wiki(tmp_path, monkeypatch):
    """``wiki({config: n_articles}, dataset_info=False)`` writes a mirror of the dump (a README
    whose YAML lists the configs, ``<config>/train-0000k-of-00002.parquet`` with id, url,
    title, text) and points ``datasets.load_dataset("wikimedia/wikipedia", ...)`` at it;
    returns the calls made and a map-style ``load_dataset`` on the mirror (the reference's)."""
    root = tmp_path / "wikipedia"
    calls = []
    real = datasets.load_dataset

    def write(sizes, dataset_info=False):
        configs, infos = [], []
        for config, n in sizes.items():
            (root / config).mkdir(parents=True)
            half = n // 2
            for k, (a, b) in enumerate([(0, half), (half, n)]):
                ids = range(a, b)
                table = pa.table({"id": [str(i) for i in ids], "url": [f"u{i}" for i in ids],
                                  "title": [f"T{i}" for i in ids],
                                  "text": [_article(i) for i in ids]})
                pq.write_table(table, root / config / f"train-0000{k}-of-00002.parquet")
            configs.append(f"- config_name: {config}\n  data_files:\n  - split: train\n"
                           f"    path: {config}/train-*\n")
            infos.append(f"- config_name: {config}\n  features:\n  - name: id\n    dtype: string\n"
                         "  - name: url\n    dtype: string\n  - name: title\n    dtype: string\n"
                         "  - name: text\n    dtype: string\n  splits:\n  - name: train\n"
                         f"    num_examples: {n}\n")
        info = "dataset_info:\n" + "".join(infos) if dataset_info else ""
        (root / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + info + "---\n",
                                        encoding="utf-8")

        def reference(config, split):
            rows = real(str(root), config, split=split, cache_dir=str(tmp_path / "cache"))
            return [t for t in rows["text"] if t.strip()]

        return calls, reference

    def load_dataset(path, *args, **kwargs):
        if path == WIKI:
            calls.append((args, kwargs))
            path = str(root)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return write


def test_wikipedia_slices_are_the_references_5_percent(wiki):
    calls, reference = wiki({"20231101.sk": 210})
    corpus = load_corpus("wikipedia", "sk", validation_size=6)
    assert calls[0] == (("20231101.sk",), {"split": "train", "streaming": True})
    # No row count in the metadata: counted by streaming the id column only.
    assert calls[1] == (("20231101.sk",), {"split": "train", "streaming": True, "columns": ["id"]})
    assert corpus.streaming and corpus.source == "wikimedia/wikipedia 20231101.sk"
    # 5% of 210 is 10.5, which datasets rounds to 10 (round half to even).
    assert corpus.max_documents == 10
    assert list(corpus.train) == reference("20231101.sk", "train[:5%]")
    assert list(corpus.train) == list(corpus.train)  # re-iterable: a second epoch streams again
    # Validation: the first 6 articles of train[5%:] (the empty ones dropped).
    after = reference("20231101.sk", "train[5%:]")
    assert corpus.validation == [_article(i) for i in range(10, 16) if i % 7 != 3]
    assert corpus.validation == after[: len(corpus.validation)]
    assert not set(corpus.validation) & set(corpus.train)


def test_wikipedia_row_count_from_the_dataset_metadata(wiki):
    calls, reference = wiki({"20231101.de": 400}, dataset_info=True)
    corpus = load_corpus("wikipedia", "de", validation_size=0.1)  # a fraction of the 20
    assert len(calls) == 1  # the split's num_examples: no counting pass
    assert list(corpus.train) == reference("20231101.de", "train[:5%]")
    assert len(corpus.validation) == 2 and corpus.validation[0] == _article(20)


def test_wikipedia_english_first_articles_and_the_next_for_validation(wiki, monkeypatch):
    calls, reference = wiki({"20231101.en": 60})
    en = languages.get_language("en")
    assert en.wikipedia_max_articles == 1_000_000  # the reference's train[:1000000]
    monkeypatch.setitem(
        languages._REGISTRY, "en", dataclasses.replace(en, wikipedia_max_articles=20)
    )
    corpus = load_corpus("wikipedia", "English", validation_size=3)
    assert corpus.max_documents == 20
    assert list(corpus.train) == reference("20231101.en", "train[:20]")
    assert corpus.validation == reference("20231101.en", "train[20:]")[:3]
    # The default validation slice: 10% of the training slice, at most a fixed count.
    monkeypatch.setattr(corpora, "DEFAULT_STREAM_VALIDATION_DOCUMENTS", 1)
    assert load_corpus("wikipedia", "en").validation == [_article(20)]


def test_wikipedia_max_documents_caps_training_inside_the_slice(wiki):
    wiki({"20231101.sk": 400})
    corpus = load_corpus("wikipedia", "sk", max_documents=5, validation_size=2)
    assert corpus.max_documents == 5
    assert list(corpus.train) == [_article(i) for i in range(5) if i % 7 != 3]
    assert corpus.validation == [_article(20), _article(21)]  # still after the 5% boundary


def test_wikipedia_errors(wiki, monkeypatch):
    wiki({"20231101.de": 10, "20231101.sk": 400})
    with pytest.raises(LangTransferError, match=r"10 articles; its first 5% is none"):
        load_corpus("wikipedia", "de")
    with pytest.raises(LangTransferError, match="no 'body' column"):
        load_corpus("wikipedia", "sk", text_field="body")

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(LangTransferError, match=r"cannot stream .*20231101\.sw.*no network"):
        load_corpus("wikipedia", "sw")


def test_streamed_training_text_is_shuffled_within_a_buffer(wiki, monkeypatch):
    """train_language shuffles a streamed corpus's blocks (seeded, the same every run),
    as the reference's map-style dataset draws them at random; local files stay map-style."""
    from itertools import islice

    from langtransfer.training import language as language_training
    from langtransfer.training.span_corruption import span_corruption_dataset

    wiki({"20231101.sk": 4000})
    seen = {}

    class Stop(Exception):
        pass

    def capture(composed, tokenizer, train, *args, **kwargs):
        seen["train"], seen["tokenizer"] = train, tokenizer
        raise Stop

    monkeypatch.setattr(language_training, "train_representation", capture)
    for _ in range(2):
        with pytest.raises(Stop):
            language_training.train_language(
                model="tiny", language="sk", kind="prompt", corpus="wikipedia",
                output="unused", sequence_length=32, validation_size=5, shuffle_buffer=50)
        seen.setdefault("runs", []).append(
            [r["input_ids"] for r in islice(seen["train"], 40)])
    first, second = seen["runs"]
    assert first == second  # seeded: the same order on every run
    corpus = load_corpus("wikipedia", "sk", validation_size=5)
    plain = span_corruption_dataset(corpus.train, seen["tokenizer"], input_length=32, seed=42)
    in_order = [r["input_ids"] for r in islice(plain, 200)]
    assert first != in_order[:40]  # not the dump order...
    assert all(block in in_order for block in first)  # ...but the same blocks, locally mixed
