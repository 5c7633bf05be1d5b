"""Predictions files, score_predictions and the ``langtransfer score`` verb end to end."""

from __future__ import annotations

import json
import re

import pytest

from langtransfer.cli import main
from langtransfer.errors import DataFormatError, LangTransferError
from langtransfer.inference.scoring import read_predictions, score_predictions, write_predictions
from langtransfer.tasks import FIXTURES_DIR, get_task

FIELDS = ("task", "language", "n_examples", "n_unparseable", "n_missing", "n_extra")


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def test_read_predictions(tmp_path):
    path = _write(tmp_path / "p.jsonl", [{"id": "a", "prediction": "Yes", "extra": 1},
                                         {"id": 7, "prediction": None}])
    assert read_predictions(path) == {"a": "Yes", "7": None}


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [(['{"id": "a", "prediction": "x"}', '{"id": "b", "prediction": "y"', ""], 2, "invalid JSON"),
     (['{"id": "a", "prediction": "x"}', "", '{"id": "b"}'], 3, "'id' and 'prediction'"),
     (['{"id": "a", "prediction": "x"}', '{"id": "a", "prediction": "y"}'], 2, "duplicate id"),
     (['["a", "x"]'], 1, "'id' and 'prediction'"),
     (['{"id": [1], "prediction": "x"}'], 1, "id must be")],
)
def test_malformed_prediction_lines_name_file_and_line(tmp_path, lines, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        read_predictions(path)
    assert err.value.line == line and message in str(err.value) and str(path) in str(err.value)


def test_missing_predictions_file(tmp_path):
    with pytest.raises(LangTransferError, match="does not exist"):
        read_predictions(tmp_path / "none.jsonl")


def test_score_predictions_counts_missing_unparseable_and_extra():
    task = get_task("nli")
    examples = task.load("sk", "test", source="fixtures")
    preds = {e.id: e.target for e in examples[2:]}  # two missing
    preds[examples[2].id] = "hmm"  # unparseable
    preds[examples[3].id] = task.classes.index(examples[3].gold)  # a parsed class id
    preds[examples[4].id] = examples[4].gold  # a parsed class name
    preds["not-a-gold-id"] = "Yes"
    m = score_predictions(task, examples, preds)
    assert list(m)[:2] == ["task", "language"] and all(k in m for k in FIELDS)
    assert (m["task"], m["language"], m["n_examples"]) == ("nli", "sk", len(examples))
    assert (m["n_missing"], m["n_unparseable"], m["n_extra"]) == (2, 1, 1)
    # Strict reading: "hmm" and the two missing are wrong. Reference reading: "hmm" is
    # read as Maybe (right only if that example's gold is neutral); missing stay wrong.
    assert m["strict_accuracy"] == pytest.approx(100 * (len(examples) - 3) / len(examples))
    hmm_right = examples[2].gold == "neutral"
    assert m["accuracy"] == pytest.approx(100 * (len(examples) - 3 + hmm_right) / len(examples))


def test_score_predictions_rejects_unrelated_ids_and_bad_values():
    task = get_task("qa")
    examples = task.load("en", "test", source="fixtures")
    with pytest.raises(LangTransferError, match="none of the 1 prediction ids"):
        score_predictions(task, examples, {"other": "x"})
    with pytest.raises(LangTransferError, match=f"id '{examples[0].id}'"):
        score_predictions(task, examples, {examples[0].id: ["a list"]})


def test_written_predictions_score_perfectly(tmp_path):
    task = get_task("ner")
    examples = task.load("ru", "test", source="fixtures")
    path = tmp_path / "out" / "predictions.jsonl"
    write_predictions(path, examples, [e.target for e in examples])
    m = score_predictions(task, examples, read_predictions(path))
    assert m["f1"] == 100.0 and m["n_missing"] == 0


def test_score_cli_end_to_end(tmp_path, capsys):
    task = get_task("ner")
    data = FIXTURES_DIR / "ner" / "ru.test.jsonl"
    examples = task.load("ru", "test", data)
    rows = [{"id": e.id, "prediction": e.target} for e in examples]
    rows[0]["prediction"] = "PER: Кто-то"  # one wrong span instead of two right ones
    preds = _write(tmp_path / "preds.jsonl", rows)
    out = tmp_path / "result"
    assert main(["score", "--task", "ner", "--data", str(data), "--predictions", str(preds),
                 "--output", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert all(k in metrics for k in FIELDS)
    assert (metrics["task"], metrics["language"]) == ("ner", "ru")  # language from file name
    n_gold = metrics["n_gold_spans"]
    assert metrics["n_correct_spans"] == n_gold - len(examples[0].gold)
    assert metrics["metrics"]["recall"] == pytest.approx(100 * (n_gold - 2) / n_gold)
    assert metrics["primary_metric"] == "f1" and "f1" in metrics["metrics"]
    assert not list(out.glob(".*tmp"))  # written atomically, no temporary left
    assert "f1" in capsys.readouterr().out


def test_score_cli_on_real_xquad_and_fixtures(tmp_path, xquad_dir, capsys):
    examples = get_task("qa").load("de", "test", xquad_dir / "xquad.de.json")
    preds = _write(tmp_path / "p.jsonl", [{"id": e.id, "prediction": e.target}
                                          for e in examples])
    assert main(["score", "--task", "qa", "--data", str(xquad_dir / "xquad.de.json"),
                 "--predictions", str(preds)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"exact_match\s+100\.00", out) and re.search(r"n_examples\s+1190", out)

    cw = get_task("checkworthiness").load("sk", "test", source="fixtures")
    preds = _write(tmp_path / "cw.jsonl", [{"id": e.id, "prediction": "Checkworthy"}
                                           for e in cw])
    assert main(["score", "--task", "checkworthiness", "--source", "fixtures", "--language",
                 "sk", "--predictions", str(preds), "--output", str(tmp_path / "cw")]) == 0
    metrics = json.loads((tmp_path / "cw" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["metrics"]["accuracy"] == 50.0  # half the fixture claims are check-worthy


def test_score_cli_errors_are_one_line(tmp_path, capsys):
    preds = _write(tmp_path / "p.jsonl", [{"id": "1", "prediction": "x"}])
    assert main(["score", "--task", "pos", "--data", str(tmp_path), "--predictions",
                 str(preds)]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'pos'" in err and err.count("\n") == 1
    data = _write(tmp_path / "gold.jsonl", [{"premise": "p", "hypothesis": "h", "label": 0}])
    assert main(["score", "--task", "nli", "--data", str(data), "--predictions",
                 str(preds)]) == 2
    assert "--language" in capsys.readouterr().err


def test_score_help_explains_the_predictions_format(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    out = capsys.readouterr().out
    assert '"prediction"' in out and "n_missing" in out and "--predictions" in out


