"""Named profiles (issue 22): one table, selectable in one line in a study config and on
every verb that trains or evaluates; the default keeps every earlier hash; a study
directory holds one profile; the report names it. The behaviours themselves are checked
in tests/test_reference_profile.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_report import make_record

from langtransfer import tasks
from langtransfer.cli import build_parser, main
from langtransfer.cli.study import EXAMPLES, example_path
from langtransfer.errors import LangTransferError, OutputExistsError, UnknownNameError
from langtransfer.profiles import DEFAULT_PROFILE, LABEL_ORDERS, PROFILES, get_profile
from langtransfer.report.build import build_report
from langtransfer.study.jobs import EvaluationJob, LanguageJob, TaskJob, job_settings, plan
from langtransfer.study.load import load_study_config
from langtransfer.study.run import prepare_output

STUDY = {
    "model": "tiny", "sources": ["en"], "targets": ["en", "sk"], "tasks": ["nli", "qa"],
    "configurations": ["base", "ta", "stp", "la+ta", "slp+ta", "slp+stp"],
    "corpus": "fixtures", "data": "fixtures", "sequence_length": 64,
    "language_training": {"prompt": {"num_tokens": 4}},
    "task_training": {"prompt": {"num_tokens": 4}},
}


def write(tmp_path: Path, name: str, **changes) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**STUDY, "output": str(tmp_path / "out"), **changes}),
                    encoding="utf-8")
    return path


def test_one_table_and_a_one_line_error_naming_the_profiles():
    assert DEFAULT_PROFILE == "method" and set(PROFILES) == {"method", "reference"}
    assert get_profile(None) is PROFILES["method"]
    with pytest.raises(UnknownNameError) as err:
        get_profile("paper")
    assert str(err.value) == "unknown profile 'paper'; valid: method, reference"
    assert tasks.LABEL_ORDERS is LABEL_ORDERS  # one place for the label readings
    for profile in PROFILES.values():
        assert profile.label_order in tasks.LABEL_ORDERS
        assert profile.empty_answers in tasks.EMPTY_ANSWERS


def test_naming_the_default_profile_changes_no_hash(tmp_path):
    plain = load_study_config(write(tmp_path, "plain"))
    named = load_study_config(write(tmp_path, "named", profile="method"))
    assert named.fingerprint() == plain.fingerprint()
    assert {a.id: a.hash for a in plan(named)} == {a.id: a.hash for a in plan(plain)}
    # and the method's settings are what a study always had
    for art in plan(plain):
        settings = job_settings(art.job)
        assert not {"profile", "label_order", "empty_answers"} & set(settings)
        if art.stage == "evaluation":
            assert "long_inputs" not in settings["evaluation"]
        if art.stage in ("language", "task") and settings.get("prompt"):
            assert "parameter_rows" not in settings["prompt"]


def test_the_reference_profile_sets_every_job(tmp_path):
    config = load_study_config(write(tmp_path, "ref", profile="reference"))
    plain = {a.id: a.hash for a in plan(load_study_config(write(tmp_path, "plain")))}
    seen = set()
    for art in plan(config):
        job = art.job
        assert art.hash != plain[art.id], art.id  # nothing of one profile is another's
        assert job.profile == "reference"
        if isinstance(job, LanguageJob) and job.kind == "prompt":
            assert job.spec.parameter_rows == 8
        if isinstance(job, TaskJob):
            seen.add(job.configuration)
            assert job.train.keep_best is (job.kind == "adapter")
            assert job.reference_slp_stp_quirk is (job.configuration == "slp+stp")
            assert (job.label_order, job.empty_answers) == ("positional", "keep")
            if job.kind == "prompt":
                assert job.spec.parameter_rows == 8
        if isinstance(job, EvaluationJob):
            assert job.evaluation.long_inputs == "last_chunk"
            assert (job.label_order, job.empty_answers) == ("positional", "keep")
    assert seen == {"ta", "stp", "la+ta", "slp+ta", "slp+stp"}


def test_keys_given_in_the_config_win_over_the_profile(tmp_path):
    config = load_study_config(write(
        tmp_path, "mixed", profile="reference",
        task_training={"prompt": {"num_tokens": 4, "keep_best": True,
                                  "reference_slp_stp_quirk": False}},
        evaluation={"long_inputs": "first"}))
    for art in plan(config):
        if isinstance(art.job, TaskJob) and art.job.kind == "prompt":
            assert art.job.train.keep_best and not art.job.reference_slp_stp_quirk
        if isinstance(art.job, EvaluationJob):
            assert art.job.evaluation.long_inputs == "first"
    # the quirk without a profile, as before profiles existed
    quirk = load_study_config(write(
        tmp_path, "quirk", task_training={"prompt": {"reference_slp_stp_quirk": True}}))
    jobs = [a.job for a in plan(quirk) if isinstance(a.job, TaskJob)]
    assert [j.configuration for j in jobs if j.reference_slp_stp_quirk] == ["slp+stp"] * 2


@pytest.mark.parametrize("changes, message", [
    ({"profile": "paper"}, "unknown profile 'paper'; valid: method, reference"),
    ({"profile": ["reference"]}, "unknown profile ['reference']; valid: method, reference"),
    ({"evaluation": {"long_inputs": "middle"}},
     "unknown evaluation.long_inputs 'middle'; valid: first, last_chunk"),
])
def test_bad_profile_settings_are_one_line_errors(tmp_path, changes, message):
    path = write(tmp_path, "bad", **changes)
    with pytest.raises(LangTransferError) as err:
        load_study_config(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_directory_of_one_profile_refuses_the_other(tmp_path):
    method = load_study_config(write(tmp_path, "m"))
    prepare_output(method)
    reference = load_study_config(write(tmp_path, "r", profile="reference"))
    with pytest.raises(OutputExistsError, match="; profile method vs reference\\)"):
        prepare_output(reference)
    prepare_output(load_study_config(write(tmp_path, "m2", profile="method")))  # the same
    prepare_output(reference, overwrite=True)  # asked for: the reference's now
    with pytest.raises(OutputExistsError, match="profile reference vs method"):
        prepare_output(method)


def test_every_verb_that_trains_or_evaluates_takes_profile(tmp_path, capsys):
    parser = build_parser()
    for verb in ("train-language", "train-task", "evaluate", "score", "study"):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([verb, "--profile", "paper"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "argument --profile: invalid choice: 'paper' (choose from method, reference)" \
            in err or "(choose from 'method', 'reference')" in err, verb
    # study --profile overrides the config's key, and Slurm's jobs are told it too
    from langtransfer.study.slurm import job_script

    path = write(tmp_path, "cli")
    config = load_study_config(path, profile="reference")
    assert config.profile_settings().name == "reference"
    script = job_script(config, path, tmp_path / "marker", ["--unit", "u1"])
    assert "--profile reference --unit u1" in script
    assert "--profile" not in job_script(load_study_config(path), path, tmp_path / "m", [])
    # and the local executor's workers load the study with it
    from langtransfer.study.local import StudySource

    source = StudySource(str(path), profile="reference", fingerprint=config.fingerprint())
    assert source.load().profile_settings().name == "reference"


def test_the_paper_examples_are_one_profile_each(capsys):
    assert set(EXAMPLES) >= {"paper", "paper-method"}
    profiles = {}
    for name in ("paper", "paper-method"):
        assert main(["study", "--example", name]) == 0
        shown = capsys.readouterr().out
        assert shown == example_path(name).read_text(encoding="utf-8")
        raw = yaml.safe_load(shown)
        profiles[name] = raw["profile"]
        rest = {k: v for k, v in raw.items() if k not in ("profile", "output")}
        profiles.setdefault("grids", []).append(json.dumps(rest, sort_keys=True))
    assert (profiles["paper"], profiles["paper-method"]) == ("reference", "method")
    assert profiles["grids"][0] == profiles["grids"][1]  # the same grid otherwise


def test_the_report_says_which_profile_made_its_tables(tmp_path):
    records = [make_record("qa", c, t, v=50.0, profile="reference")
               for c in ("base", "ta") for t in ("en", "de")]
    build_report(records, tmp_path / "r")
    lines = (tmp_path / "r" / "report.md").read_text().splitlines()
    assert lines[2].startswith("Profile `reference` (the published numbers as the paper's "
                               "reference code computed them): it made every table")
    table = (tmp_path / "r" / "tables" / "qa.en.md").read_text().splitlines()[0]
    assert table == "# qa — source en, metric f1, profile reference"
    assert json.loads((tmp_path / "r" / "report.json").read_text())["profiles"] == ["reference"]
    # records from before profiles: the method's
    build_report([{k: v for k, v in r.items() if k != "profile"} for r in records],
                 tmp_path / "old")
    assert (tmp_path / "old" / "report.md").read_text().splitlines()[2].startswith(
        "Profile `method`")
    mixed = records + [make_record("qa", "stp", "en", v=1.0, profile="method")]
    with pytest.raises(LangTransferError, match="task qa \\(source en\\) mixes results of the "
                       "profiles method, reference; a table needs one"):
        build_report(mixed, tmp_path / "mixed")
