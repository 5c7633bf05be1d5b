"""Settings hashes identify data by content (issue 20): the same study from another
installation of the package, another working directory or a copy of the data elsewhere
is the same study (nothing stale, nothing rebuilt); an edited data file makes exactly
what read it stale."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import langtransfer
from langtransfer.errors import OutputExistsError
from langtransfer.study import fingerprints
from langtransfer.study.fingerprints import data_identity
from langtransfer.study.jobs import job_settings, plan
from langtransfer.study.load import load_study_config
from langtransfer.study.run import STUDY_FILE, is_done, prepare_output, run_study

PACKAGE = Path(langtransfer.__file__).resolve().parent
FIXTURES = PACKAGE / "data"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A digest cache of this test's own (memory and disk), so each test hashes afresh."""
    monkeypatch.setenv("LANGTRANSFER_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fingerprints, "_memory", {})
    monkeypatch.setattr(fingerprints, "_disk", None)


def user_data(root: Path) -> Path:
    """A user's data: a corpus file per language and a directory of NLI files."""
    (root / "corpus").mkdir(parents=True)
    for lang in ("en", "sk"):
        shutil.copy(FIXTURES / "text" / f"{lang}.txt", root / "corpus" / f"{lang}.txt")
    shutil.copytree(FIXTURES / "tasks" / "nli", root / "nli")
    return root


def write_config(path: Path, data_root: str, output: str) -> Path:
    """A study over the user's data (paths under ``data_root``, relative or absolute), the
    shipped demo files (checkworthiness) and the shipped corpus (de)."""
    path.write_text(yaml.safe_dump({
        "model": "tiny", "sources": ["en"], "targets": ["en", "sk"],
        "tasks": ["nli", "checkworthiness"], "configurations": ["base", "slp+stp"],
        "corpus": {"en": f"{data_root}/corpus/en.txt", "sk": f"{data_root}/corpus/sk.txt"},
        "data": {"nli": f"{data_root}/nli", "checkworthiness": "demo-fixtures"},
        "sequence_length": 64, "max_train_examples": 8, "max_eval_examples": 4,
        "output": output,
    }), encoding="utf-8")
    return path


def hashes_in(cwd: Path, config: Path) -> dict[str, str]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return {a.id: a.hash for a in plan(load_study_config(config))}
    finally:
        os.chdir(old)


def fake_build(art) -> None:
    """Marks the artefact done with its hash, as a real build would."""
    art.path.parent.mkdir(parents=True, exist_ok=True)
    if art.stage == "evaluation":
        art.path.write_text(json.dumps({"settings_hash": art.hash}))
    else:
        art.path.mkdir(exist_ok=True)
        (art.path / "manifest.json").write_text(json.dumps({
            "format": "langtransfer.representation", "format_version": 1,
            "kind": art.key[0] if art.stage == "language" else "prompt", "role": art.stage,
            "base_model": {"d_model": 64}, "settings_hash": art.hash}))


def test_no_hash_holds_where_the_package_or_the_data_lies(tmp_path):
    config = write_config(tmp_path / "study.yaml", str(tmp_path / "data"), str(tmp_path / "out"))
    user_data(tmp_path / "data")
    arts = {a.id: a for a in plan(load_study_config(config))}
    text = json.dumps([job_settings(a.job) for a in arts.values()])
    assert str(PACKAGE) not in text and str(tmp_path) not in text
    demo = job_settings(arts["task:checkworthiness/en/slp+stp"].job)
    assert demo["train_data"] == "langtransfer:data/demo/checkworthiness"
    nli = job_settings(arts["task:nli/en/slp+stp"].job)
    assert nli["train_data"].startswith("sha256:")
    assert job_settings(arts["language:prompt/en"].job)["corpus"] == data_identity(
        tmp_path / "data" / "corpus" / "en.txt")
    assert data_identity("fixtures") == "fixtures" and data_identity(None) is None
    assert data_identity("no/such/file.jsonl") == "no/such/file.jsonl"  # as written


def test_another_installation_working_directory_and_copy_of_the_data_change_no_hash(tmp_path):
    """The plan from here, and from a copy of the package on another path run in another
    working directory whose relative data paths point at a copy of the data: same hashes."""
    here = tmp_path / "here"
    user_data(here / "data")
    config = write_config(here / "study.yaml", "data", "out")
    expected = hashes_in(here, config)
    assert len(expected) > 10

    there = tmp_path / "node2"
    shutil.copytree(here / "data", there / "data")
    install = tmp_path / "venv2" / "site-packages"
    shutil.copytree(PACKAGE, install / "langtransfer",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import json, sys, langtransfer\n"
              "from langtransfer.study.load import load_study_config\n"
              "from langtransfer.study.jobs import plan\n"
              "assert langtransfer.__file__.startswith(sys.argv[2]), langtransfer.__file__\n"
              "print(json.dumps({a.id: a.hash for a in plan(load_study_config(sys.argv[1]))}))\n")
    env = {**os.environ, "PYTHONPATH": str(install),
           "LANGTRANSFER_CACHE_DIR": str(tmp_path / "cache2")}
    done = subprocess.run([sys.executable, "-c", script, str(config), str(install)], cwd=there,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == expected

    # The copy of the data named by absolute paths: the same hashes again.
    absolute = write_config(there / "abs.yaml", str(there / "data"), "out")
    assert hashes_in(tmp_path, absolute) == expected


def test_a_study_resumes_from_a_copy_of_its_data_and_an_edit_is_noticed(tmp_path):
    user_data(tmp_path / "a")
    out = str(tmp_path / "out")
    config = load_study_config(write_config(tmp_path / "a.yaml", str(tmp_path / "a"), out))
    first = run_study(config, progress=False, builder=fake_build)
    assert first.ok and first.built == len(plan(config))

    # Elsewhere (another node's mount of the same data): the directory is this study's,
    # and nothing is stale.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    moved = load_study_config(write_config(tmp_path / "b.yaml", str(tmp_path / "b"), out))
    assert moved.fingerprint() == config.fingerprint()
    assert moved.fingerprint(by_path=True) != config.fingerprint(by_path=True)
    again = run_study(moved, progress=False, builder=fake_build)
    assert (again.built, again.skipped) == (0, first.built)

    # One edited training file: exactly what read its directory is stale, and rebuilt.
    with open(tmp_path / "b" / "nli" / "en.train.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"premise": "Nové.", "hypothesis": "Iné.", "label": 1}) + "\n")
    edited = load_study_config(tmp_path / "b.yaml")
    stale = {a.id for a in plan(edited) if not is_done(a)}
    assert stale == {a.id for a in plan(edited) if "nli" in a.id}
    rebuilt = run_study(edited, progress=False, builder=fake_build)
    assert (rebuilt.built, rebuilt.skipped) == (len(stale), first.built - len(stale))
    # An edited corpus: its language representation and what needs it.
    (tmp_path / "b" / "corpus" / "sk.txt").write_text("Iný text.\n" * 50, encoding="utf-8")
    corpus_edit = {a.id for a in plan(load_study_config(tmp_path / "b.yaml")) if not is_done(a)}
    assert "language:prompt/sk" in corpus_edit and "language:prompt/en" not in corpus_edit
    assert {"evaluation:nli/slp+stp/en/sk", "evaluation:checkworthiness/slp+stp/en/sk"} <= (
        corpus_edit)
    assert not any("/base/" in i or "task:" in i for i in corpus_edit)
    # A study with other data: still refused.
    other = load_study_config(write_config(tmp_path / "c.yaml", str(tmp_path / "b"), out))
    other.data = {"nli": "fixtures", "checkworthiness": "demo-fixtures"}
    with pytest.raises(OutputExistsError, match="different settings"):
        prepare_output(other)


def test_a_study_directory_fingerprinted_by_paths_is_accepted_once(tmp_path):
    """Directories written before data paths were left out of the fingerprint hold the
    one of the paths as written: the same config is the same study (marker rewritten)."""
    user_data(tmp_path / "a")
    config = load_study_config(write_config(tmp_path / "a.yaml", str(tmp_path / "a"),
                                            str(tmp_path / "out")))
    out = tmp_path / "out"
    out.mkdir()
    (out / STUDY_FILE).write_text(json.dumps({"fingerprint": config.fingerprint(by_path=True)}))
    assert prepare_output(config) == out
    assert json.loads((out / STUDY_FILE).read_text())["fingerprint"] == config.fingerprint()


def test_digests_are_cached_by_file_identity_and_stat(tmp_path, monkeypatch):
    data = tmp_path / "d.jsonl"
    data.write_text("one\n")
    first = data_identity(data)
    cache = json.loads((tmp_path / "cache" / fingerprints.CACHE_FILE).read_text())
    assert list(cache.values()) == [first.removeprefix("sha256:")]
    # Another process (fresh memory) reads the digest from the disk cache, unread.
    monkeypatch.setattr(fingerprints, "_memory", {})
    monkeypatch.setattr(fingerprints, "_disk", None)
    monkeypatch.setattr(fingerprints.hashlib, "sha256", None)  # would fail if it hashed
    assert data_identity(data) == first
    monkeypatch.undo()
    monkeypatch.setenv("LANGTRANSFER_CACHE_DIR", str(tmp_path / "cache"))
    data.write_text("two\n")  # same size, later mtime: hashed again
    assert data_identity(data) not in (first, str(data))
