"""The readers of the paper's local-only sets against verbatim excerpts of the real releases.

``../shared/data/release-excerpts/`` (beside the repository; see its README for where each
excerpt comes from) holds unmodified prefixes of TeQuAD's test files, RONLI, a Slovenian
SQuAD 2.0 file and ChineseSQuAD dev. Each is read here through the project's own loader, the
way a user's copy of the release is read, and checked against what the file says when read
independently (``json``, plain line splitting). ``LANGTRANSFER_RELEASE_EXCERPTS`` points
elsewhere (a worktree's ``../shared`` is not the main checkout's).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from langtransfer.tasks import get_task

QA, NLI = get_task("qa"), get_task("nli")
EXCERPTS = Path(os.environ.get("LANGTRANSFER_RELEASE_EXCERPTS",
                               SHARED_DATA / "release-excerpts"))


@pytest.fixture
def excerpts() -> Path:
    if not EXCERPTS.is_dir():
        pytest.skip(f"real release excerpts not found at {EXCERPTS} (../shared beside the "
                    "repo, or LANGTRANSFER_RELEASE_EXCERPTS)")
    return EXCERPTS


def test_tequad_test_files(excerpts):
    root = excerpts / "tequad"
    lines = {name: (root / "Test" / "Corrected" / name).read_text(encoding="utf-8").split("\n")
             for name in ("corrected_ans_tel.txt", "que_tel.txt", "real_con_tel.txt",
                          "span_tel.txt")}
    n = len(lines["span_tel.txt"]) - 1  # each file ends with a newline
    assert n == 200 and {len(v) - 1 for v in lines.values()} == {n}
    examples = QA.load("te", "test", root)
    assert [e.id for e in examples] == [str(i) for i in range(n)]
    for i, ex in enumerate(examples):
        answer, context = lines["corrected_ans_tel.txt"][i].strip(), lines["real_con_tel.txt"][i]
        assert ex.target == answer and ex.gold == (answer,)
        assert ex.input == f"question: {lines['que_tel.txt'][i]} context: {context}"
        assert answer in context  # the release's answers are spans of their contexts
    # span lines are two tab-separated token indices (not character offsets), the first of
    # which the reference stores as answer_start; scoring reads only the answer text
    assert all(s.count("\t") == 1 and s.replace("\t", "").isdigit()
               for s in lines["span_tel.txt"][:n])
    assert QA.resolve("te", "test", root).endswith("Test/Corrected/span_tel.txt")


@pytest.mark.parametrize("split", ["validation", "test"])
def test_ronli_json(excerpts, split):
    raw = json.loads((excerpts / "ronli" / f"{split}.json").read_text(encoding="utf-8"))
    assert len(raw) == 200 and set(raw[0]) == {"sentence1", "sentence2", "label", "guid"}
    examples = NLI.load("ro", split, excerpts / "ronli")
    kept = [r for r in raw if r["label"] != 2]  # the reference drops label 2
    assert [e.id for e in examples] == [r["guid"] for r in kept]
    mapped = {0: "contradiction", 1: "entailment", 3: "neutral"}
    assert [e.gold for e in examples] == [mapped[r["label"]] for r in kept]
    assert examples[0].input == (f'{kept[0]["sentence1"]} \n\nQuestion: Does this imply that '
                                 f'"{kept[0]["sentence2"]}"? Yes, no, or maybe?')
    assert set(Counter(r["label"] for r in raw)) == {0, 1, 2, 3}  # every RONLI label occurs


def test_slovenian_squad_flat_json(excerpts, tmp_path):
    path = excerpts / "slsquad" / "squad_slo_mini_test.json"
    raw = json.loads(path.read_text(encoding="utf-8"))["data"]
    answered = [r for r in raw if r["answers"]["text"]]
    assert len(raw) == 154 and 0 < len(answered) < len(raw)
    direct = QA.load("sl", "test", path)  # one file, named for the test split
    # as the release ships: the directory holding the dev file under its release name
    (tmp_path / "squad2-slo-mt-dev.json").symlink_to(path)
    assert QA.load("sl", "test", tmp_path) == direct
    assert [e.gold for e in direct] == [tuple(r["answers"]["text"]) for r in answered]
    assert [e.target for e in direct] == [r["answers"]["text"][0] for r in answered]
    ids = [r["id"] for r in answered]
    (repeated,) = [i for i, c in Counter(ids).items() if c > 1]  # the release repeats one id
    assert f"{repeated}#2" in [e.id for e in direct]
    assert len({e.id for e in direct}) == len(direct)


def test_chinese_squad_v1_json(excerpts):
    raw = json.loads((excerpts / "zhsquad" / "dev-v1.1-zh.json").read_text(encoding="utf-8"))
    qas = [(p["context"], q) for a in raw["data"] for p in a["paragraphs"] for q in p["qas"]]
    assert len(qas) == 37
    examples = QA.load("zh", "test", excerpts / "zhsquad")
    assert [e.id for e in examples] == [q["id"] for _, q in qas]
    assert [e.gold for e in examples] == [tuple(a["text"] for a in q["answers"]) for _, q in qas]
    assert examples[0].input == f"question: {qas[0][1]['question']} context: {qas[0][0]}"
