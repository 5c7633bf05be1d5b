"""The paper's data sources: hub loading by file, the reference's splits, schemas, leakage.

Hub sources are loaded from a local mirror laid out exactly as the hub serves the
repository and revision (the parquet export's ``<config>/<split>/*.parquet`` on
``refs/convert/parquet``), pre-filled offline in huggingface_hub's cache, so the code path
is the real one: ``snapshot_download`` then ``load_dataset("parquet", data_files=...)``.
"""

from __future__ import annotations

import hashlib
import json
import math

import datasets
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.tasks import get_task
from langtransfer.tasks.paper_data import QA_SOURCES
from langtransfer.tasks.sources import PARQUET_EXPORT, carve

QA, NLI, CW = get_task("qa"), get_task("nli"), get_task("checkworthiness")


# ------------------------------------------------------------------ the mirror
@pytest.fixture
def hub(tmp_path, monkeypatch):
    """``hub(repo, {path: rows, text or a datasets.Dataset}, revision)`` writes a repository
    snapshot into an offline huggingface_hub cache (parquet for row lists; a Dataset through
    its own ``to_parquet``, which keeps its features in the schema metadata as the hub's
    export does) and returns the snapshot dir."""
    import huggingface_hub.constants as hf_constants

    cache = tmp_path / "hub"
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets")

    def write(repo: str, files: dict, revision: str = PARQUET_EXPORT):
        root = cache / f"datasets--{repo.replace('/', '--')}"
        sha = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
        snapshot = root / "snapshots" / sha
        for rel, content in files.items():
            path = snapshot / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            elif isinstance(content, datasets.Dataset):
                content.to_parquet(str(path))
            else:
                pq.write_table(pa.Table.from_pylist(content), path)
        ref = root / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(sha)
        return snapshot

    return write


def squad_rows(n, prefix="q"):
    return [{"id": f"{prefix}{i}", "title": "t", "context": f"Oslo {i} is cold.",
             "question": f"Which {i}?", "answers": {"text": [f"Oslo {i}"], "answer_start": [0]}}
            for i in range(n)]


def test_parquet_export_by_config_name_fails_in_datasets_itself(tmp_path):
    """Why the hub path goes by files: on the export's layout, ``datasets`` infers one
    ``default`` config from the directories, so a config name is not found and the
    default config mixes every config's rows."""
    for config in ("mlqa-translate-train.de", "mlqa-translate-train.es"):
        (tmp_path / config / "train").mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(squad_rows(3, config)),
                       tmp_path / config / "train" / "0000.parquet")
    with pytest.raises(ValueError, match="BuilderConfig 'mlqa-translate-train.de' not found"):
        datasets.load_dataset(str(tmp_path), "mlqa-translate-train.de", split="train",
                              cache_dir=str(tmp_path / "cache"))
    mixed = datasets.load_dataset(str(tmp_path), split="train", cache_dir=str(tmp_path / "c2"))
    assert {i[:-1] for i in mixed["id"]} == {"mlqa-translate-train.de", "mlqa-translate-train.es"}


# --------------------------------------------------------- the reference split
def reference_split(frame: pd.DataFrame, picks):
    """The reference's own calls: ``HFDataset.from_pandas(df).train_test_split(0.15, 42)``."""
    data = datasets.Dataset.from_pandas(frame)
    for part in picks:
        data = data.train_test_split(test_size=0.15, seed=42)[part]
    return list(data["id"])


@pytest.mark.parametrize("n", [7, 20, 101])
def test_carve_is_the_references_train_test_split(n):
    frame = pd.DataFrame({"id": [f"x{i}" for i in range(n)], "v": range(n)})
    for picks in (("test",), ("train",), ("train", "test"), ("train", "train")):
        assert [f"x{i}" for i in carve(n, picks)] == reference_split(frame, picks)
    # and what that is: the first ceil(15%) of a seed-42 permutation is the test part
    perm = np.random.default_rng(42).permutation(n)
    assert carve(n, ("test",)) == perm[: math.ceil(0.15 * n)].tolist()


def test_mlqa_translate_train_splits_as_the_reference(hub):
    train = squad_rows(40, "tr")
    hub("facebook/mlqa", {
        "mlqa-translate-train.de/train/0000.parquet": train[:25],
        "mlqa-translate-train.de/train/0001.parquet": train[25:],  # shards, read in order
        "mlqa-translate-train.de/validation/0000.parquet": squad_rows(6, "va"),
        "mlqa-translate-train.es/train/0000.parquet": squad_rows(5, "es"),
    })
    got = {split: [e.id for e in QA.load("de", split)] for split in ("train", "validation", "test")}
    frame = pd.DataFrame(train)
    assert got["validation"] == reference_split(frame, ("test",))
    assert got["train"] == reference_split(frame, ("train",))
    assert got["test"] == [f"va{i}" for i in range(6)]  # MLQA translate-train validation
    assert not set(got["train"]) & set(got["validation"])
    assert len(got["train"]) + len(got["validation"]) == 40


def test_english_validation_comes_from_squad_train_not_dev(hub):
    """XQuAD-en is drawn from SQuAD dev, so dev never selects checkpoints."""
    hub("rajpurkar/squad", {"plain_text/train/0000.parquet": squad_rows(30, "tr"),
                            "plain_text/validation/0000.parquet": squad_rows(8, "dev")})
    validation = [e.id for e in QA.load("en", "validation")]
    test = [e.id for e in QA.load("en", "test")]
    assert validation and all(i.startswith("tr") for i in validation)
    assert test == [f"dev{i}" for i in range(8)]
    assert QA_SOURCES["en"]["validation"].split == "train"


# ------------------------------------------------------- every hub source
def _schema_rows(dataset: str, split: str, n: int = 20):
    """Rows in the real schema of each hub set (HUB-SOURCES.md and the reference's reads)."""
    if dataset in ("rajpurkar/squad", "facebook/mlqa", "google/xquad"):
        return squad_rows(n)
    if dataset == "kuznetsoffandrey/sberquad":
        return [{**r, "id": i} for i, r in enumerate(squad_rows(n))]  # int ids
    if dataset == "Mostafa3zazi/Arabic_SQuAD":
        return [{"index": i, "question": "Which?", "context": f"Oslo {i} is cold.",
                 "text": f"Oslo {i}", "answer_start": 0, "c_id": 1} for i in range(n)]
    if dataset == "lightblue/KenSwQuAD":
        return [{"Story_ID": 1, "context": f"Oslo {i}.", "question": "Which?",
                 "answers": {"text": [f"Oslo {i}"]}} for i in range(n)]
    if dataset == "uqa/UQA":
        return [{"id": f"u{i}", "title": "t", "context": f"Oslo {i}.", "question": "Which?",
                 "is_impossible": False, "answer": f"Oslo {i}", "answer_start": 0}
                for i in range(n)]
    if dataset == "unimelb-nlp/wikiann":
        return [{"tokens": ["Oslo", "!"], "ner_tags": [5, 0], "langs": ["x", "x"],
                 "spans": ["LOC: Oslo"]} for _ in range(n)]
    if dataset == "ctu-aic/anli_cs":
        return [{"id": str(i), "claim": "h", "evidence": "p", "label": i % 3} for i in range(n)]
    if dataset == "cjvt/si_nli":
        label = "" if split == "test" else "neutral"  # the public test split has no labels
        return [{"pair_id": str(i), "premise": "p", "hypothesis": "h", "label": label}
                for i in range(n)]
    return [{"premise": "p", "hypothesis": "h", "label": i % 3} for i in range(n)]


HUB_CELLS = [
    (task.name, lang, split)
    for task in (QA, get_task("ner"), NLI)
    for lang, by_split in task.sources.items()
    for split, src in by_split.items()
    if src.dataset is not None and src.revision == PARQUET_EXPORT
]


@pytest.mark.parametrize(("task", "lang", "split"), HUB_CELLS)
def test_every_parquet_export_source_loads_from_a_mirror(hub, task, lang, split):
    src = get_task(task).sources[lang][split]
    (pattern,) = src.file_patterns
    assert pattern == f"{src.config or 'default'}/{src.split}/*.parquet"
    hub(src.dataset, {pattern.replace("*", "0000"): _schema_rows(src.dataset, src.split)})
    examples = get_task(task).load(lang, split)
    expected = {(): 20, ("test",): 3, ("train",): 17, ("train", "test"): 3,
                ("train", "train"): 14}[src.pick]
    assert len(examples) == expected
    assert examples[0].target in ("Yes", "Maybe", "No", "LOC: Oslo") or examples[
        0
    ].target.startswith("Oslo")
    if (task, lang, split) == ("nli", "sl", "test"):  # the reference's mapping of no label
        assert {e.gold for e in examples} == {"contradiction"}
    if (task, lang) == ("nli", "cs"):  # claim/evidence read as hypothesis/premise
        assert examples[0].input.startswith('p \n\nQuestion: Does this imply that "h"?')


def test_all_cells_of_the_paper_grid_have_a_source_or_a_reason():
    for task in (QA, get_task("ner"), NLI, CW):
        for lang in ("ar", "bg", "cs", "de", "el", "en", "es", "ml", "ro", "ru", "sl", "sk",
                     "sw", "te", "ur", "zh"):
            assert "test" in task.sources.get(lang, {}) or lang in task.unavailable, (task, lang)
        for lang in ("en", "de", "es", "ar", "ru", "zh"):
            assert {"train", "validation"} <= set(task.sources[lang]), (task.name, lang)
    assert set(QA.unavailable) == {"bg"}


def test_uqa_rows_are_grouped_by_id_and_unanswerable_ones_dropped(hub):
    rows = [{"id": f"u{i}", "title": "t", "context": "Oslo and Bergen.", "question": f"Q{i}?",
             "is_impossible": False, "answer": "Oslo", "answer_start": 0} for i in range(12)]
    rows.insert(3, {**rows[2], "answer": "Bergen", "answer_start": 9})  # a second answer
    rows.append({**rows[0], "id": "gone", "is_impossible": True, "answer": "",
                 "answer_start": -1})
    hub("uqa/UQA", {"default/train/0000.parquet": rows, "default/validation/0000.parquet": rows})
    test = {e.id: e for e in QA.load("ur", "test")}
    assert len(test) == 12 and "gone" not in test
    assert test["u2"].gold == ("Oslo", "Bergen")
    # the 85/15 split is over the 13 grouped questions, the impossible one included
    frame = pd.DataFrame([{"id": r["id"]} for r in rows if r is not rows[3]])
    assert [e.id for e in QA.load("ur", "train")] == [
        i for i in reference_split(frame, ("train",)) if i != "gone"]


def test_kenswquad_and_arabic_squad_cut_one_split_three_ways(hub):
    hub("lightblue/KenSwQuAD", {"default/train/0000.parquet": _schema_rows(
        "lightblue/KenSwQuAD", "train", 50)})
    ids = {split: [e.id for e in QA.load("sw", split)] for split in ("train", "validation", "test")}
    frame = pd.DataFrame({"id": [str(i) for i in range(50)]})
    assert ids["test"] == reference_split(frame, ("test",))
    assert ids["validation"] == reference_split(frame, ("train", "test"))
    assert ids["train"] == reference_split(frame, ("train", "train"))
    assert sorted(sum(ids.values(), []), key=int) == [str(i) for i in range(50)]


def test_indicqa_raw_json_from_main(hub):
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "Oslo is cold.", "qas": [
        {"id": "a", "question": "Where?", "answers": [{"text": "Oslo", "answer_start": 0}]},
        {"id": "b", "question": "Why?", "answers": [{"text": "", "answer_start": -1}]}]}]}]}
    hub("ai4bharat/IndicQA", {"data/indicqa.ml.json": json.dumps(squad)}, revision="main")
    assert [e.id for e in QA.load("ml", "test")] == ["a"]


def test_a_missing_mirror_is_a_clear_error(hub):
    with pytest.raises(LangTransferError, match=r"cannot load hub:facebook/xnli\[de\]:test"
                       r"@refs/convert/parquet.*path="):
        NLI.load("de", "test")
    hub("facebook/xnli", {"de/test/0000.parquet": [{"premise": "p", "text": "t"}]})
    with pytest.raises(DataFormatError, match=r"hub:facebook/xnli\[de\]:test.*hypothesis"):
        NLI.load("de", "test")


# ------------------------------------------------------------ local releases
def squad2(questions):
    return {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
        "context": "Oslo is cold.", "qas": questions}]}]}


def answered(i):
    return {"id": f"a{i}", "question": f"Q{i}?",
            "answers": [{"text": "Oslo", "answer_start": 0}], "is_impossible": False}


def unanswerable(i):
    return {"id": f"n{i}", "question": f"N{i}?", "answers": [], "is_impossible": True,
            "plausible_answers": [{"text": "cold", "answer_start": 8}]}


def test_squad2_release_dir_splits_and_filters_as_the_reference(tmp_path):
    root = tmp_path / "CSSQuAD"
    (root / "squad-2.0-cs").mkdir(parents=True)
    train_qs = [answered(i) if i % 4 else unanswerable(i) for i in range(40)]
    (root / "squad-2.0-cs" / "train-v2.0.json").write_text(json.dumps(squad2(train_qs)))
    (root / "squad-2.0-cs" / "dev-v2.0.json").write_text(json.dumps(squad2(
        [answered(100), unanswerable(101)])))
    assert [e.id for e in QA.load("cs", "test", root)] == ["a100"]
    frame = pd.DataFrame([{"id": q["id"]} for q in train_qs])
    validation = [e.id for e in QA.load("cs", "validation", root)]
    assert validation == [i for i in reference_split(frame, ("test",)) if i.startswith("a")]
    train = [e.id for e in QA.load("cs", "train", root)]
    assert not set(train) & set(validation)
    (root / "squad-2.0-cs" / "dev-v2.0.json").write_text(json.dumps(squad2([unanswerable(1)])))
    with pytest.raises(DataFormatError, match=r"dev-v2.0.json: all 1 questions are "
                       r"unanswerable \(column 'answers' is empty\); valid:"):
        QA.load("cs", "test", root)


def test_slovenian_flat_json_and_chinese_squad(tmp_path):
    (tmp_path / "squad2-slo-mt-dev.json").write_text(json.dumps({"data": [
        {"id": "s1", "context": "Oslo.", "question": "Q?",
         "answers": {"text": ["Oslo"], "answer_start": [0]}},
        {"id": "s2", "context": "Oslo.", "question": "N?", "answers": {"text": [],
                                                                     "answer_start": []}}]}))
    assert [e.id for e in QA.load("sl", "test", tmp_path)] == ["s1"]
    (tmp_path / "dev-v1.1-zh.json").write_text(json.dumps(squad2([answered(1)])))
    assert [e.target for e in QA.load("zh", "test", tmp_path)] == ["Oslo"]


def test_tequad_text_files(tmp_path):
    test = tmp_path / "Test" / "Corrected"
    test.mkdir(parents=True)
    (test / "corrected_ans_tel.txt").write_text(" Oslo \nBergen\n", encoding="utf-8")
    (test / "que_tel.txt").write_text("Where?\nWhich?\n", encoding="utf-8")
    (test / "real_con_tel.txt").write_text("Oslo is cold.\r\nIn Bergen.\n", encoding="utf-8")
    (test / "span_tel.txt").write_text("0\t4\n3\t9\n", encoding="utf-8")
    got = QA.load("te", "test", tmp_path)
    assert [(e.id, e.input, e.target) for e in got] == [
        ("0", "question: Where? context: Oslo is cold.", "Oslo"),
        ("1", "question: Which? context: In Bergen.", "Bergen")]
    (test / "span_tel.txt").write_text("0\t4\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match="different line counts.*span_tel.txt 1"):
        QA.load("te", "test", tmp_path)
    with pytest.raises(LangTransferError, match="not found: .*Train/real_ans_tel.txt"):
        QA.load("te", "train", tmp_path)


def test_ronli_labels_are_mapped_and_skanli_columns_renamed(tmp_path):
    rows = [{"sentence1": "p", "sentence2": f"h{i}", "label": i} for i in range(4)]
    (tmp_path / "test.json").write_text(json.dumps(rows))
    got = NLI.load("ro", "test", tmp_path)
    assert [(e.input.split('"')[1], e.gold) for e in got] == [
        ("h0", "contradiction"), ("h1", "entailment"), ("h3", "neutral")]
    (tmp_path / "test.json").write_text(json.dumps([{**rows[0], "label": 7}]))
    with pytest.raises(DataFormatError, match=r"test.json: RONLI label 7 in column 'label'; "
                       "valid: 0, 1, 2, 3"):
        NLI.load("ro", "test", tmp_path)
    (tmp_path / "anli_sk_test.csv").write_text(
        "uid,claim,evidence,label,translated\n1,h,p,2,True\n", encoding="utf-8")
    (ex,) = NLI.load("sk", "test", tmp_path)
    assert ex.gold == "contradiction" and ex.input.startswith("p \n\nQuestion")


def multiclaim(root, header="en,de,claim", rows=("Taxes rose,Steuern,1", "Hello,Hallo,0")):
    root.mkdir(exist_ok=True)
    for i, name in enumerate(("train-all.csv", "dev-all.csv", "test-all.csv")):
        body = "\n".join(f"{r}" for r in rows)
        (root / name).write_text(f"{header}\n{body}\nExtra {i},Noch {i},0\n", encoding="utf-8")
    return root


def test_multiclaim_dir_reads_the_language_column_and_claim_label(tmp_path):
    root = multiclaim(tmp_path / "MultiClaim")
    de = CW.load("de", "test", root)
    assert [(e.input, e.gold) for e in de] == [
        ("checkworthiness claim: Steuern", "checkworthy"),
        ("checkworthiness claim: Hallo", "not_checkworthy"),
        ("checkworthiness claim: Noch 2", "not_checkworthy")]
    assert [e.input for e in CW.load("en", "validation", root)][-1].endswith("Extra 1")
    with pytest.raises(DataFormatError, match=r"train-all.csv: no text column for language "
                       r"'sk' \(column 'sk'\); language columns: de, en"):
        CW.load("sk", "train", root)
    multiclaim(root, rows=("Taxes rose,Steuern,2",))
    with pytest.raises(DataFormatError, match=r"test-all.csv:2: column 'claim' holds '2'; "
                       "valid: 0, 1"):
        CW.load("en", "test", root)


# ------------------------------------------------------------------ leakage
def test_single_files_never_serve_train_and_test(tmp_path):
    squad = squad2([answered(i) for i in range(30)])
    train = tmp_path / "sk.train.json"
    train.write_text(json.dumps(squad))
    assert len(QA.load("sk", "train", train)) == 30
    for split in ("validation", "test"):  # validation: train_task holds out its own part
        with pytest.raises(LangTransferError, match=f"refusing .*sk.train.json as {split} data"):
            QA.load("sk", split, train)
    plain = tmp_path / "squad-shaped.json"
    plain.write_text(json.dumps(squad))
    assert len(QA.load("sk", "test", plain)) == 30
    for split in ("train", "validation"):
        with pytest.raises(LangTransferError, match=f"refusing .* as {split} data: its name "
                           "names no split"):
            QA.load("sk", split, plain)
    dev = tmp_path / "sk-quad-dev.json"
    dev.write_text(json.dumps(squad))
    assert len(QA.load("sk", "test", dev)) == len(QA.load("sk", "validation", dev)) == 30
    with pytest.raises(LangTransferError, match="dev.json as train data"):
        QA.load("sk", "train", dev)


def test_train_task_on_one_train_file_validates_on_a_disjoint_part(tmp_path, monkeypatch):
    """The study passes the train data for validation too: the file refuses, and training
    holds out its own part, so the checkpoint is never chosen on training rows."""
    from langtransfer.training import task as task_training

    rows = [{"premise": f"p{i}", "hypothesis": "h", "label": i % 3} for i in range(40)]
    train = tmp_path / "en.train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    seen = {}

    def stop(model, **kw):
        raise LangTransferError("stop before the model")

    real = task_training.load_examples

    def spy(task, language, split, data=None, max_examples=None, **reading):
        out = real(task, language, split, data, max_examples, **reading)
        seen[split] = out
        return out

    monkeypatch.setattr(task_training, "load_examples", spy)
    monkeypatch.setattr("langtransfer.composition.loaded_base.load_base", stop)  # bases load there
    with pytest.raises(LangTransferError, match="stop before the model"):
        task_training.train_task(model="tiny", task="nli", language="en", kind="adapter",
                                 data=train, output=tmp_path / "out")
    assert set(seen) == {"train"}  # validation refused the train file


@pytest.mark.parametrize("task", ["qa", "ner", "nli", "checkworthiness"])
def test_shipped_fixture_splits_are_disjoint(task):
    t = get_task(task)
    for lang in ("en", "de"):
        train = {e.input for e in t.load(lang, "train", source="fixtures")}
        test = {e.input for e in t.load(lang, "test", source="fixtures")}
        assert train and test and not train & test, (task, lang)


def _disjoint(a, b) -> bool:
    """Two sources share no row: other files/splits, or picks that part at some step."""
    if (a.dataset, a.config, a.split, a.local) != (b.dataset, b.config, b.split, b.local):
        return True
    return any(x != y for x, y in zip(a.pick, b.pick, strict=False))


def test_the_paper_config_never_reads_one_file_for_train_and_test():
    from importlib.resources import files

    import yaml

    config = yaml.safe_load(files("langtransfer").joinpath("configs/paper.yaml").read_text())
    for task_name in config["tasks"]:
        task, entry = get_task(task_name), config["data"].get(task_name)
        for lang in config["sources"]:
            value = entry.get(lang) if isinstance(entry, dict) else entry
            # a directory of the set's release (or the hub): the source table decides
            assert value is None or not value.rsplit("/", 1)[-1].count("."), value
            splits = task.sources[lang]
            assert _disjoint(splits["train"], splits["test"]), (task_name, lang)
            assert _disjoint(splits["validation"], splits["test"]), (task_name, lang)
            assert _disjoint(splits["train"], splits["validation"]), (task_name, lang)


def test_docs_data_md_names_every_source():
    from conftest import REPO

    text = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    for task in (QA, get_task("ner"), NLI, CW):
        for by_split in task.sources.values():
            for src in by_split.values():
                # TeQuAD's four files per split are written as one pattern per directory
                names = [src.dataset] if src.dataset else [
                    n.rsplit("/", 1)[0] + "/" if n.endswith("_tel.txt") else n.rsplit("/", 1)[-1]
                    for n in src.local]
                for name in names:
                    assert name in text, (task.name, name)
    assert "no source" in text and "mlqa-translate-train.bg" in text


def test_evaluate_on_the_paper_source_reads_the_hub_mirror(hub, tmp_path):
    """The study's path for a hub cell (``data=None``) end to end on the tiny model."""
    from langtransfer.inference.evaluate import evaluate

    rows = [{"premise": f"Prem {i}.", "hypothesis": "Hyp.", "label": i % 3} for i in range(6)]
    hub("facebook/xnli", {"de/test/0000.parquet": rows})
    record = evaluate(model="tiny", task="nli", language="de", output=tmp_path / "eval",
                      max_new_tokens=2, show_progress=False)
    assert record["n_examples"] == 6
    lines = (tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["gold"] for line in lines] == [
        "entailment", "neutral", "contradiction"] * 2


# ------------------------------------------- labels read by the data's class names
def nli_dataset(labels, names):
    """ANLI-CS-shaped rows with ``datasets`` features: ``to_parquet`` stores the
    ``ClassLabel`` names in the schema metadata, as the hub's parquet export does."""
    features = datasets.Features({
        "id": datasets.Value("string"), "claim": datasets.Value("string"),
        "evidence": datasets.Value("string"), "label": datasets.ClassLabel(names=list(names))})
    return datasets.Dataset.from_dict(
        {"id": [str(i) for i in range(len(labels))], "claim": [f"h{i}" for i in labels],
         "evidence": ["p"] * len(labels), "label": labels}, features=features)


# What public use of ctu-aic/anli_cs indicates (0 refutes ... 2 supports), as class names.
CS_NAMES = ("contradiction", "neutral", "entailment")


def test_class_names_in_the_export_decide_what_a_label_id_means(hub):
    snapshot = hub("ctu-aic/anli_cs", {"default/test/0000.parquet": nli_dataset([0, 1, 2, 0],
                                                                                CS_NAMES)})
    metadata = pq.read_schema(snapshot / "default/test/0000.parquet").metadata[b"huggingface"]
    assert json.loads(metadata)["info"]["features"]["label"]["names"] == list(CS_NAMES)
    data = NLI.load_data("cs", "test")
    assert [e.gold for e in data.examples] == ["contradiction", "neutral", "entailment",
                                               "contradiction"]
    assert [e.target for e in data.examples] == ["No", "Maybe", "Yes", "No"]
    assert data.label_mapping == (
        "column 'label': label ids read by the data's class names (0 contradiction, 1 neutral, "
        "2 entailment); the reference read them by position (0 entailment, 1 neutral, "
        "2 contradiction)")
    ref = NLI.load_data("cs", "test", label_order="positional")  # the reference's reading
    assert [e.gold for e in ref.examples] == ["entailment", "neutral", "contradiction",
                                              "entailment"]
    assert ref.label_mapping == (
        "column 'label': label ids read by position, as the reference did (0 entailment, "
        "1 neutral, 2 contradiction); the data's class names say 0 contradiction, 1 neutral, "
        "2 entailment")
    assert NLI.load("cs", "test", label_order="positional") == ref.examples


def test_fever_class_names_and_names_that_say_nothing(hub):
    hub("ctu-aic/anli_cs", {"default/test/0000.parquet": nli_dataset(
        [0, 2], ("REFUTES", "NOT ENOUGH INFO", "SUPPORTS"))})
    data = NLI.load_data("cs", "test")
    assert [e.gold for e in data.examples] == ["contradiction", "entailment"]
    assert "(0 REFUTES = contradiction, 1 NOT ENOUGH INFO = neutral, 2 SUPPORTS = " \
           "entailment)" in data.label_mapping
    # XNLI's own names agree with the positions, numerals name nothing: no note either way
    for names in (("entailment", "neutral", "contradiction"), ("0", "1", "2")):
        hub("ctu-aic/anli_cs", {"default/test/0000.parquet": nli_dataset([0, 2], names)})
        for order in ("by_name", "positional"):
            data = NLI.load_data("cs", "test", label_order=order)
            assert [e.gold for e in data.examples] == ["entailment", "contradiction"]
            assert data.label_mapping is None


def test_class_names_that_are_not_the_tasks_labels_are_refused_naming_both(hub):
    hub("ctu-aic/anli_cs", {"default/test/0000.parquet": nli_dataset(
        [0, 1], ("positive", "negative"))})
    with pytest.raises(DataFormatError) as err:
        NLI.load("cs", "test")
    assert str(err.value) == (
        "hub:ctu-aic/anli_cs:test@refs/convert/parquet: class names of column 'label' "
        "(positive, negative) are not all nli labels (entailment, neutral, contradiction; "
        "or the words Yes, Maybe, No)")
    ref = NLI.load_data("cs", "test", label_order="positional")  # the reference reads ids
    assert [e.gold for e in ref.examples] == ["entailment", "neutral"]
    assert ref.label_mapping.endswith("the data's class names say 0 positive, 1 negative")
    with pytest.raises(UnknownNameError, match="unknown label order 'names'; valid: by_name, "
                       "positional"):
        NLI.load("cs", "test", label_order="names")


def test_local_parquet_files_are_read_by_their_class_names_too(tmp_path):
    nli_dataset([0, 2], CS_NAMES).to_parquet(str(tmp_path / "cs.test.parquet"))
    assert [e.gold for e in NLI.load("cs", "test", tmp_path)] == ["contradiction", "entailment"]
    assert [e.gold for e in NLI.load("cs", "test", tmp_path / "cs.test.parquet")] == [
        "contradiction", "entailment"]
    copy = tmp_path / "anli_cs"  # a copy laid out as the hub's export
    (copy / "default" / "test").mkdir(parents=True)
    nli_dataset([2, 1], CS_NAMES).to_parquet(str(copy / "default" / "test" / "0000.parquet"))
    data = NLI.load_data("cs", "test", copy)
    assert [e.gold for e in data.examples] == ["entailment", "neutral"]
    assert data.where == f"{copy} (a copy of hub:ctu-aic/anli_cs:test@refs/convert/parquet)"
    assert data.label_mapping is not None


def test_metrics_json_says_how_the_labels_were_read(hub, tmp_path):
    from langtransfer.inference.evaluate import evaluate

    hub("ctu-aic/anli_cs", {"default/test/0000.parquet": nli_dataset([0, 1, 2], CS_NAMES)})
    for order, golds in (("by_name", ["contradiction", "neutral", "entailment"]),
                         ("positional", ["entailment", "neutral", "contradiction"])):
        out = tmp_path / order
        record = evaluate(model="tiny", task="nli", language="cs", output=out,
                          max_new_tokens=2, show_progress=False, label_order=order)
        written = json.loads((out / "metrics.json").read_text())
        assert written["label_mapping"] == record["label_mapping"]
        assert record["label_mapping"].startswith(
            "column 'label': label ids read by " + ("the data's class names" if order ==
                                                    "by_name" else "position"))
        lines = (out / "predictions.jsonl").read_text().splitlines()
        assert [json.loads(line)["gold"] for line in lines] == golds
    hub("facebook/xnli", {"de/test/0000.parquet": [{"premise": "p", "hypothesis": "h",
                                                    "label": 0}]})
    record = evaluate(model="tiny", task="nli", language="de", max_new_tokens=2,
                      show_progress=False)
    assert "label_mapping" not in record  # no class names, nothing to say


def test_score_cli_metrics_json_says_how_the_labels_were_read(tmp_path, capsys):
    from langtransfer.cli import main

    data = tmp_path / "cs.test.parquet"
    nli_dataset([0, 2], CS_NAMES).to_parquet(str(data))
    preds = tmp_path / "preds.jsonl"
    preds.write_text('{"id": "0", "prediction": "No"}\n{"id": "1", "prediction": "No"}\n')
    assert main(["score", "--task", "nli", "--data", str(data), "--predictions", str(preds),
                 "--output", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["metrics"]["accuracy"] == 50.0  # gold: contradiction, entailment
    assert metrics["label_mapping"].startswith("column 'label': label ids read by the data's")
    capsys.readouterr()


# ------------------------------------------------------------ SK-ANLI on the hub
SKANLI_CSV = ("uid,claim,evidence,label,translated\n"
              "{p}1,Hyp one,Prem one,0,True\n"
              '{p}2,"Hyp, two",Prem two,2,False\n')


def test_slovak_nli_reads_the_hub_csvs_of_ivykopal_anli_sk(hub, tmp_path):
    from langtransfer.study.data_check import check_data

    hub("ivykopal/anli_sk", {f"{split}.csv": SKANLI_CSV.format(p=split[:2])
                             for split in ("train", "validation", "test")}, revision="main")
    for split in ("train", "validation", "test"):
        got = NLI.load("sk", split)
        assert [(e.id, e.gold) for e in got] == [
            (f"{split[:2]}1", "entailment"), (f"{split[:2]}2", "contradiction")]
        assert got[1].input == 'Prem two \n\nQuestion: Does this imply that "Hyp, two"? ' \
                               "Yes, no, or maybe?"
        assert check_data("nli", "sk", split, None).source == f"hub:ivykopal/anli_sk:{split}@main"
    # a local directory laid out like the hub repository is read the same way
    copy = tmp_path / "anli_sk"
    copy.mkdir()
    (copy / "test.csv").write_text(SKANLI_CSV.format(p="te"), encoding="utf-8")
    assert NLI.load("sk", "test", copy) == NLI.load("sk", "test")
    assert NLI.resolve("sk", "test", copy) == f"{copy} (a copy of hub:ivykopal/anli_sk:test@main)"
    with pytest.raises(LangTransferError, match=r"not found: .*anli_sk_train.csv \(task nli "
                       r"reads SK-ANLI.* from anli_sk_train.csv under .*anli_sk, or from a copy of "
                       r"hub:ivykopal/anli_sk:train@main laid out as the hub serves it "
                       r"\(train.csv\)\)$"):
        NLI.load("sk", "train", copy)
    # a hub-only source: the directory is neither layout, and the error names both
    with pytest.raises(LangTransferError, match=r"unknown language for nli files in .*'de'; "
                       r"valid: ; nor is .* a copy of hub:facebook/xnli\[de\]:test@refs/convert/"
                       r"parquet laid out as the hub serves it \(de/test/\*.parquet\)$"):
        NLI.load("de", "test", copy)


def test_the_paper_config_needs_no_local_file_for_slovak_nli():
    from importlib.resources import files

    import yaml

    config = yaml.safe_load(files("langtransfer").joinpath("configs/paper.yaml").read_text())
    assert "sk" not in config["data"]["nli"]


# ------------------------------------------------------------ MultiClaim floats
def test_multiclaim_claim_written_as_floats_by_pandas(tmp_path):
    root = tmp_path / "MultiClaim"
    root.mkdir()
    frame = pd.DataFrame({"en": ["Taxes rose", "Hello", "Sky"], "de": ["Steuern", "Hallo", ""],
                          "claim": [1, 0, None]})  # the missing value makes the column float
    for name in ("train-all.csv", "dev-all.csv", "test-all.csv"):
        frame.to_csv(root / name, index=False)
    assert "Taxes rose,Steuern,1.0" in (root / "test-all.csv").read_text()
    # German skips the row without text; English has a claim that is no number at all
    assert [e.gold for e in CW.load("de", "test", root)] == ["checkworthy", "not_checkworthy"]
    with pytest.raises(DataFormatError, match=r"test-all.csv:4: column 'claim' holds nothing; "
                       r"valid: 0, 1 \(or 0.0, 1.0\)$"):
        CW.load("en", "test", root)
    for bad, shown in (("0.5", "'0.5'"), ("2.0", "'2.0'"), ("yes", "'yes'")):
        (root / "test-all.csv").write_text(f"en,claim\nA,1.0\nB,{bad}\n", encoding="utf-8")
        with pytest.raises(DataFormatError, match=rf"test-all.csv:3: column 'claim' holds "
                           rf"{shown}; valid: 0, 1 \(or 0.0, 1.0\)$"):
            CW.load("en", "test", root)
    frame.dropna().to_parquet(tmp_path / "en.test.parquet")  # floats stay floats in parquet
    assert pq.read_schema(tmp_path / "en.test.parquet").field("claim").type == pa.float64()
    assert [e.gold for e in CW.load("en", "test", tmp_path)] == ["checkworthy",
                                                                 "not_checkworthy"]


# ------------------------------------------------------ a parquet export gone
class _NoExport(requests.adapters.HTTPAdapter):
    """The hub's answer to a revision it does not have: 404 with ``X-Error-Code:
    RevisionNotFound``, which huggingface_hub turns into ``RevisionNotFoundError``."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def send(self, request, **kwargs):
        self.urls.append(request.url)
        response = requests.Response()
        response.status_code = 404
        response.headers.update({"X-Error-Code": "RevisionNotFound",
                                 "X-Error-Message": "Invalid rev id: refs/convert/parquet"})
        response._content = b'{"error": "Invalid rev id: refs/convert/parquet"}'
        response.url, response.request = request.url, request
        return response


@pytest.fixture
def hub_without_export(hub, monkeypatch):
    """An online hub (behind huggingface_hub's own HTTP backend hook) that has no
    parquet-export revision of any dataset."""
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    adapter = _NoExport()

    def session():
        s = requests.Session()
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s

    huggingface_hub.configure_http_backend(backend_factory=session)
    yield adapter
    huggingface_hub.configure_http_backend()


def test_a_missing_parquet_export_says_so_and_a_local_copy_is_read_instead(
        hub_without_export, tmp_path):
    from huggingface_hub.errors import RevisionNotFoundError

    from langtransfer.tasks.sources import MissingExportError

    with pytest.raises(MissingExportError) as err:
        QA.load("de", "validation")
    assert isinstance(err.value.__cause__, RevisionNotFoundError)  # the hub call's own error
    assert hub_without_export.urls[0].endswith(
        "/api/datasets/facebook/mlqa/revision/refs%2Fconvert%2Fparquet")
    assert str(err.value) == (
        "facebook/mlqa config 'mlqa-translate-train.de' split 'train': the hub has no parquet "
        "export (refs/convert/parquet) of this dataset (deleted when main changes, not rebuilt "
        "for a loading-script dataset); put a copy of its mlqa-translate-train.de/train/*.parquet "
        "files at those paths in a directory and pass that as the data (path=, --data, "
        "data.<task>.<language>; docs/data.md)")
    from langtransfer.results.failures import one_line
    assert one_line(err.value).endswith("docs/data.md)")  # a study's record keeps all of it
    with pytest.raises(MissingExportError, match=r"^Divyanshu/indicxnli config 'te' split "
                       r"'test': .* te/test/\*.parquet files"):
        NLI.load("te", "test")
    # the way out: the copy, read with the reference's splits as the hub's files would be
    copy, train = tmp_path / "mlqa", squad_rows(40, "tr")
    for rel, rows in (("train/0000.parquet", train[:25]), ("train/0001.parquet", train[25:]),
                      ("validation/0000.parquet", squad_rows(6, "va"))):
        (copy / "mlqa-translate-train.de" / rel).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), copy / "mlqa-translate-train.de" / rel)
    frame = pd.DataFrame(train)
    assert [e.id for e in QA.load("de", "validation", copy)] == reference_split(frame, ("test",))
    assert [e.id for e in QA.load("de", "train", copy)] == reference_split(frame, ("train",))
    assert [e.id for e in QA.load("de", "test", copy)] == [f"va{i}" for i in range(6)]
    assert QA.resolve("de", "train", copy).startswith(
        f"{copy} (a copy of hub:facebook/mlqa[mlqa-translate-train.de]:train@refs/convert/parquet"
        " (85% part")
