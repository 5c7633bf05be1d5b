"""Study axes (issue 15 items 1-2): init strategies, instruction variants and corpus size
change the plan as docs/study.md documents, bad values are one-line errors naming them,
and the report writes (and names) a plot per axis."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from test_study import small

from langtransfer.cli import main
from langtransfer.errors import LangTransferError
from langtransfer.languages import get_language
from langtransfer.report.build import build_report
from langtransfer.results.records import read_records
from langtransfer.study.jobs import plan
from langtransfer.study.load import load_study_config

CONFIGURATIONS = ["base", "ta", "la+ta", "slp+ta", "slp+stp"]


def stages(arts) -> dict[str, int]:
    out = {"language": 0, "task": 0, "evaluation": 0}
    for a in arts:
        out[a.stage] += 1
    return out


def test_each_axis_changes_the_plan_as_documented(tmp_path, capsys):
    # 1 task, sources en, targets en sk de: languages trained = {en, sk, de}.
    values = dict(targets=["en", "sk", "de"], configurations=CONFIGURATIONS)
    paper = plan(load_study_config(small(tmp_path, "paper.yaml", **values)))
    axes = {"init": ["text", "vocab", "frequent"], "instruction": ["english", "native"],
            "corpus_size": ["paper", "full", 10, "2k tokens"]}
    varied = plan(load_study_config(small(tmp_path, "axes.yaml", **values, axes=axes)))
    # The paper's artefacts are untouched: same ids, same hashes, same paths.
    before = {a.id: (a.hash, a.path) for a in paper}
    assert {a.id: (a.hash, a.path) for a in varied if a.id in before} == before
    # The default values (text, english, paper) add nothing; each other value adds, per
    # language kind it varies (init/instruction: prompt; corpus_size: prompt and
    # adapter): 3 language representations (one per language), 1 task representation per
    # configuration using that kind, and x 3 targets evaluations.
    per_prompt = {"language": 3, "task": 2, "evaluation": 6}  # slp+ta, slp+stp
    per_corpus = {"language": 6, "task": 3, "evaluation": 9}  # + la+ta
    added = {s: stages(varied)[s] - stages(paper)[s] for s in per_prompt}
    assert added == {s: 3 * per_prompt[s] + 3 * per_corpus[s] for s in per_prompt}
    by_variant: dict[str, list] = {}
    for a in varied:
        if a.job.variant:
            by_variant.setdefault(a.job.variant, []).append(a)
    assert set(by_variant) == {"init=vocab", "init=frequent", "instruction=native",
                               "corpus=full", "corpus=10", "corpus=2k-tokens"}
    for label, arts in by_variant.items():
        assert stages(arts) == (per_corpus if label.startswith("corpus") else per_prompt), label
    # What each variant changes in its jobs, and where its artefacts go.
    jobs = {a.id: a for a in varied}
    sk = {label: jobs[f"language:prompt/sk/{label}"].job for label in by_variant}
    assert sk["init=vocab"].spec.init == "vocab"
    assert sk["init=frequent"].spec.init == "frequent"
    assert sk["instruction=native"].spec.init_text == get_language("sk").instruction_native
    assert (sk["corpus=full"].corpus_extent, sk["corpus=full"].max_documents) == ("full", None)
    assert (sk["corpus=10"].max_documents, sk["corpus=2k-tokens"].max_tokens) == (10, 2000)
    cell = jobs["evaluation:nli/slp+ta/en/sk/init=vocab"]
    assert cell.deps == ("task:nli/en/slp+ta/init=vocab", "language:prompt/sk/init=vocab")
    out = tmp_path / "out"
    assert cell.path == out / "results" / "init=vocab" / "nli" / "slp+ta" / "en__sk.json"
    assert jobs["language:prompt/sk/init=vocab"].path == (
        out / "representations" / "init=vocab" / "language" / "prompt" / "sk")
    # --dry-run prints the counts per variant.
    assert main(["study", str(tmp_path / "axes.yaml"), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "variant init=vocab: 3 language representations, 2 task representations, " \
           "6 evaluations" in text
    assert "variant corpus=10: 6 language representations, 3 task representations, " \
           "9 evaluations" in text
    assert re.search(r"^  language adapter \[corpus=2k-tokens\]: 3 \(en sk de\)$", text, re.M)
    assert "  evaluation nli [instruction=native]: 6 cells = configurations 2" in text


def test_within_limits_the_variants_to_part_of_the_grid(tmp_path):
    values = dict(targets=["en", "sk", "de"], tasks=["nli", "checkworthiness"],
                  configurations=CONFIGURATIONS)
    axes = {"init": ["vocab"], "corpus_size": [10],
            "within": {"tasks": ["nli"], "targets": ["sk"], "configurations": ["slp+ta"]}}
    arts = plan(load_study_config(small(tmp_path, **values, axes=axes)))
    varied = {a.id for a in arts if a.job.variant}
    # Per variant: the source's and sk's prompt, one task prompt, one cell.
    assert varied == {f"{stage}:{key}/{label}" for label in ("init=vocab", "corpus=10")
                      for stage, key in (("language", "prompt/en"), ("language", "prompt/sk"),
                                         ("task", "nli/en/slp+ta"),
                                         ("evaluation", "nli/slp+ta/en/sk"))}


@pytest.mark.parametrize("axes, message", [
    ({"init": ["vocab", "vocab"]}, "axes.init value 'vocab' repeats 'vocab'"),
    ({"corpus_size": [1000, "1k"]}, "axes.corpus_size value '1k' repeats 1000"),
    ({"corpus_size": ["paper", "paper"]}, "value 'paper' repeats 'paper'"),
    ({"init": ["vocabulary"]}, "unknown language-prompt initialisation in .* 'vocabulary'; "
     "valid: frequent, random, text, vocab"),
    ({"init": ["labels"]}, "'labels'; valid: frequent, random, text, vocab"),
    ({"corpus_size": [0]}, "corpus_size cap 0 is not positive"),
    ({"corpus_size": ["-5 tokens"]}, "corpus_size cap '-5 tokens' is not positive"),
    ({"corpus_size": ["lots"]}, "corpus_size value 'lots' is not paper, full"),
    ({"sizes": [10]}, "unknown axis in .* 'sizes'; valid: corpus_size, init, instruction, within"),
    ({"init": []}, "axes.init must be a non-empty list"),
    ({"instruction": [{"bad label": "x"}]}, "instruction label 'bad label' must be"),
    ({"init": ["vocab"], "within": {"targets": ["de"]}},
     "unknown target in .* axes.within.targets .*'de'; valid: en, sk"),
    ({"init": ["vocab"], "within": {"tasks": ["nli"], "sizes": [1]}},
     "unknown key in .* axes.within 'sizes'"),
    ({"init": ["vocab"], "within": {"configurations": ["ta"]}},
     "axes.init varies language prompts, but no configuration"),
])
def test_bad_axis_values_are_one_line_errors_naming_them(tmp_path, capsys, axes, message):
    config = small(tmp_path, axes=axes)
    with pytest.raises(LangTransferError, match=message):
        load_study_config(config)
    assert main(["study", str(config), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err


def test_an_instruction_template_equal_to_the_default_repeats_it(tmp_path):
    axes = {"instruction": ["english", {"mine": "Generate the output in {Language}:"}]}
    with pytest.raises(LangTransferError, match=r"value \{'mine': .*\} repeats 'english'"):
        load_study_config(small(tmp_path, axes=axes))


def test_an_axis_needs_a_configuration_it_varies(tmp_path):
    with pytest.raises(LangTransferError, match="axes.init varies language prompts, but no "
                       "configuration of the study uses one"):
        load_study_config(small(tmp_path, configurations=["base", "la+ta"],
                                axes={"init": ["vocab"]}))
    load_study_config(small(tmp_path, configurations=["base", "la+ta"],
                            axes={"corpus_size": ["full"]}))  # adapters have a corpus size


def test_native_instruction_needs_the_languages_own_text(tmp_path, monkeypatch):
    from langtransfer import languages

    monkeypatch.setattr(languages, "_REGISTRY", dict(languages._REGISTRY))
    langs = tmp_path / "langs.yaml"
    langs.write_text("- {code: hsb, name: Upper Sorbian, script: Latin}\n")
    config = small(tmp_path, targets=["en", "hsb"], languages_file=[str(langs)],
                   data={"nli": {"en": "fixtures", "hsb": {"test": "x.jsonl"}}},
                   corpus={"en": "en.txt", "hsb": "hsb.txt"}, axes={"instruction": ["native"]})
    with pytest.raises(LangTransferError, match="'hsb' \\(Upper Sorbian\\) has no "
                       "instruction_native"):
        load_study_config(config)


def test_task_prompts_refuse_the_language_only_init(tmp_path):
    with pytest.raises(LangTransferError, match="task_training.prompt.init 'frequent'"):
        load_study_config(small(tmp_path, task_training={"prompt": {"init": "frequent"}}))


# --- a real (tiny) study with every axis, and its report ---------------------------------


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("axes")
    config = small(root, targets=["en"], configurations=["base", "slp+ta"],
                   axes={"init": ["random"], "instruction": ["native"],
                         "corpus_size": [10, "500 tokens"]})
    assert main(["study", str(config)]) == 0
    return root / "out"


def test_a_study_with_axes_writes_each_variants_records(study):
    records = read_records(study)
    rows = {(r["configuration"], r.get("variant", "")) for r in records}
    assert rows == {("base", ""), ("slp+ta", ""), ("slp+ta", "init=random"),
                    ("slp+ta", "instruction=native"), ("slp+ta", "corpus=10"),
                    ("slp+ta", "corpus=500-tokens")}
    language = {r.get("variant", ""): r["representations"]["language"] for r in records
                if r["configuration"] == "slp+ta"}
    assert language["corpus=10"]["train_documents"] == 10
    assert 495 <= language["corpus=500-tokens"]["train_tokens"] <= 505  # the cut re-tokenised
    assert language[""]["train_documents"] > 10  # the paper's: the whole fixture
    from langtransfer.representations import read_manifest

    manifest = read_manifest(Path(language["instruction=native"]["path"]))
    assert manifest["prompt"]["init_text"] == get_language("en").instruction_native
    assert read_manifest(Path(language["init=random"]["path"]))["prompt"]["init"] == "random"


def test_the_report_writes_and_names_a_plot_per_axis(study):
    report = study / "report"
    text = (report / "report.md").read_text()
    for stem in ("corpus_size.nli.en", "init.nli.en"):
        assert (report / "axes" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert f"](axes/{stem}.png)" in text
        assert f"(axes/{stem}.csv)" in text
    assert "**Corpus size.**" in text and "**Prompt initialisation.**" in text
    # Every file under axes/ is named in report.md.
    for path in (report / "axes").iterdir():
        assert f"axes/{path.name}" in text
    assert "| slp+ta [init=random] |" in text  # the variant's row in the task table


def test_axis_plot_points_are_the_gains_over_base(study, tmp_path):
    """Edited copies of the study's records: the CSV beside the corpus plot holds each
    variant's training size, score, base and gain."""
    records = read_records(study)
    scores = {"": 50.0, "corpus=10": 40.0, "corpus=500-tokens": 45.0}
    for r in records:
        metric = r["primary_metric"]
        if r["configuration"] == "base":
            r["metrics"][metric] = 30.0
        elif r.get("variant", "") in scores:
            r["metrics"][metric] = scores[r.get("variant", "")]
    build_report(records, tmp_path / "report")
    rows = list(csv.DictReader((tmp_path / "report" / "axes" /
                                "corpus_size.nli.en.csv").open()))
    got = {r["row"]: (float(r["gain"]), r["train_documents"], r["train_tokens"]) for r in rows}
    assert got["slp+ta"][0] == 20.0 and got["slp+ta [corpus=10]"][:2] == (10.0, "10")
    assert got["slp+ta [corpus=500-tokens]"][0] == 15.0
    assert 495 <= int(got["slp+ta [corpus=500-tokens]"][2]) <= 505
    assert "slp+ta [init=random]" not in got  # another axis's rows are not on this plot
