"""``study --dry-run``: the source of every task x language x split, missing data marked
with its fix, cells without any source left out of the grid -- before any work."""

from __future__ import annotations

import re

import yaml
from test_study import small

from langtransfer.cli import main
from langtransfer.cli.study import example_path
from langtransfer.study.dry_run import check_plan, data_cells
from langtransfer.study.jobs import left_out
from langtransfer.study.load import load_study_config
from langtransfer.study.run import plan


def test_paper_grid_dry_run_is_readable_and_names_every_source(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's local data paths are relative: none exists here
    paper = example_path("paper")
    assert main(["study", str(paper), "--dry-run", "--output", "out"]) == 1  # data missing
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "plan of out: 2822 artefacts (0 done, 2822 to build)"
    # 16 x 6 x 7 x 4 = 2688 cells, less QA in Bulgarian (no source) from six sources x 7.
    assert lines[3] == "evaluations: 2646 (0 done, 2646 to build)"
    assert re.search(r"^data: \d+ task x language x split cells, \d+ ok, \d+ missing$", lines[4])
    assert len(lines) < 200  # counts first, problems grouped, no line per evaluation cell
    assert "qa bg (as target): the reference asks facebook/mlqa" in out
    # Every task x language x split the plan reads has its source listed, missing marked.
    config = load_study_config(paper, output=str(tmp_path / "out"))
    cells = data_cells(plan(config))
    sources = out[out.index("sources read"):out.index("to build:")]
    for task, language, split, _ in cells:
        assert re.search(rf"^  {task}:$(\n    .*)*\n    {language} {split}  \S", sources, re.M), (
            task, language, split)
    assert "    en test  hub:facebook/xnli[en]:test@refs/convert/parquet" in sources
    assert "    ro test  data/RONLI  [MISSING]" in sources
    assert "  nli data/RONLI: local path data/RONLI does not exist (1 cell)" in out
    assert re.search(r"^    test ro -- fix: put RONLI.*test\.json.*data\.nli\.ro", out, re.M)
    assert "evaluation qa: 630 cells = configurations 7" in out

    # Put RONLI's test file in place: that cell is no longer missing.
    (tmp_path / "data" / "RONLI").mkdir(parents=True)
    (tmp_path / "data" / "RONLI" / "test.json").write_text("[]")
    result = check_plan(plan(config), left_out(config))
    ro = next(c for c in result.checks if (c.task, c.language, c.split) == ("nli", "ro", "test"))
    assert ro.ok and ro.source.startswith("data/RONLI")
    assert not result.ok  # the others are still missing


def test_a_task_without_any_source_for_a_language_is_left_out(tmp_path):
    config = load_study_config(small(tmp_path, tasks=["qa", "nli"], targets=["en", "bg"],
                                     sources=["en", "bg"], data="hub",
                                     configurations=["base", "ta"]))
    cells = {a.key for a in plan(config) if a.stage == "evaluation"}
    assert not {c for c in cells if c[0] == "qa" and "bg" in c[2:]}  # neither source nor target
    assert {c for c in cells if c[0] == "nli" and c[3] == "bg"}  # other tasks keep bg
    assert not any(a.key[:2] == ("qa", "bg") for a in plan(config) if a.stage == "task")
    assert {(x.task, x.language, x.role) for x in left_out(config)} == {
        ("qa", "bg", "source"), ("qa", "bg", "target")}
    # Local data for the cell brings it back: the user has a source.
    config = load_study_config(small(tmp_path, "b.yaml", tasks=["qa"], targets=["en", "bg"],
                                     data={"qa": {"bg": {"test": "bg.json"}, "en": "fixtures"}},
                                     configurations=["base", "ta"]))
    assert ("qa", "base", "en", "bg") in {a.key for a in plan(config)}
    assert left_out(config) == []


def test_small_study_dry_run_is_clean_and_names_local_sources(tmp_path, capsys):
    assert main(["study", str(small(tmp_path)), "--dry-run", "--shard", "1/2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"plan of {tmp_path / 'out'} (shard 1/2): ")
    assert re.search(r"^    en train  \S*nli/en\.train\.jsonl$", out, re.M)
    assert re.search(r"^    sk test  \S*nli/sk\.test\.jsonl$", out, re.M)
    assert "missing" not in out.split("data:")[1].split("\n")[0].replace("0 missing", "")
    assert not (tmp_path / "out").exists()


def test_missing_local_data_and_corpus_are_marked_with_the_fix(tmp_path, capsys):
    path = small(tmp_path, data={"nli": {"en": "fixtures", "sk": {"test": "nowhere/sk.jsonl"}}},
                 corpus={"en": str(tmp_path / "en.txt"), "sk": "nowhere/sk.txt"})
    (tmp_path / "en.txt").write_text("some text\n")
    assert main(["study", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "data: 3 task x language x split cells, 2 ok, 1 missing" in out
    assert "nli nowhere/sk.jsonl: local path nowhere/sk.jsonl does not exist (1 cell)" in out
    assert re.search(r"test sk -- fix: .*data\.nli\.sk", out)
    assert "corpus sk: nowhere/sk.txt does not exist -- fix: put the sk text there or point " \
        "corpus.sk at it" in out
    assert "corpus en" not in out
    assert yaml.safe_load(path.read_text())["data"]["nli"]["sk"] == {"test": "nowhere/sk.jsonl"}


def test_a_reader_that_goes_away_ends_the_output_quietly(tmp_path):
    """``langtransfer study X --dry-run | head``: once the pipe's reader is gone the verb
    stops with the shell's SIGPIPE status, no traceback."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "langtransfer", "study", str(example_path("paper")),
         "--dry-run", "--output", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
