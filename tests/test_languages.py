"""The language registry, user languages and the ``languages`` verb."""

from __future__ import annotations

import json

import pytest

from langtransfer import languages
from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError
from langtransfer.languages import (
    PAPER_LANGUAGES,
    SOURCE_LANGUAGES,
    Language,
    all_languages,
    get_language,
    load_language_file,
    register_language,
)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    """Each test sees (and may change) a private copy of the registry."""
    monkeypatch.setattr(languages, "_REGISTRY", dict(languages._REGISTRY))


def test_paper_languages_scripts_and_families():
    assert len(PAPER_LANGUAGES) == 16 and len(set(PAPER_LANGUAGES)) == 16
    assert set(SOURCE_LANGUAGES) <= set(PAPER_LANGUAGES)
    by_code = {lang.code: lang for lang in all_languages()}
    assert {c: by_code[c].script for c in ("ar", "ur", "bg", "el", "ml", "te", "zh", "sk")} == {
        "ar": "Arabic",
        "ur": "Arabic",
        "bg": "Cyrillic",
        "el": "Greek",
        "ml": "Malayalam",
        "te": "Telugu",
        "zh": "Han",
        "sk": "Latin",
    }
    assert {lang.family for lang in all_languages()} == {
        "Germanic",
        "Romance",
        "Slavic",
        "Hellenic",
        "Semitic",
        "Indo-Aryan",
        "Dravidian",
        "Bantu",
        "Sinitic",
    }
    assert by_code["sw"].family == "Bantu" and by_code["ur"].family == "Indo-Aryan"


def test_lookup_by_code_and_name_ignores_case():
    sk = get_language("sk")
    assert get_language("SK") is sk
    assert get_language("slovak") is sk
    assert get_language(" Slovak ") is sk
    assert get_language(sk) is sk
    assert sk.name == "Slovak"


def test_derived_values():
    sk = get_language("sk")
    assert sk.wikipedia_config == "20231101.sk"
    assert sk.instruction == "Generate the output in Slovak:"
    assert get_language("en").wikipedia_max_articles == 1_000_000
    assert [lang.code for lang in all_languages() if lang.wikipedia_max_articles] == ["en"]
    assert get_language("de").is_source and not get_language("sk").is_source


def test_unknown_language_lists_known_codes():
    with pytest.raises(UnknownNameError) as info:
        get_language("Klingon")
    message = str(info.value)
    assert "'Klingon'" in message
    for code in PAPER_LANGUAGES:
        assert code in message
    assert isinstance(info.value, LangTransferError)


def test_register_language_then_lookup():
    lang = register_language("HSB", "Upper Sorbian", "Latin", "Slavic")
    assert lang == Language("hsb", "Upper Sorbian", "Latin", "Slavic")
    assert get_language("upper sorbian") is lang
    assert all_languages()[-1] is lang
    assert lang.instruction == "Generate the output in Upper Sorbian:"
    # Registering the same language again is harmless; family defaults to "unknown".
    assert register_language("hsb", "Upper Sorbian", "Latin", "Slavic") == lang
    assert register_language("xx", "Example", "Latin").family == "unknown"


def test_register_conflicts_are_errors():
    with pytest.raises(LangTransferError, match="already registered as Slovak"):
        register_language("sk", "Slowakisch", "Latin", "Slavic")
    assert get_language("sk").name == "Slovak"
    with pytest.raises(LangTransferError, match="already belongs to language 'de'"):
        register_language("gsw", "german", "Latin")
    with pytest.raises(LangTransferError, match="code must be"):
        register_language("two words", "Two", "Latin")
    with pytest.raises(LangTransferError, match="script must be"):
        register_language("yy", "Why", "")
    replaced = register_language("sk", "Slovak", "Latin", "West Slavic", replace=True)
    assert get_language("sk") is replaced and replaced.family == "West Slavic"


def test_load_language_file_yaml_and_json(tmp_path):
    yml = tmp_path / "extra.yaml"
    yml.write_text(
        "- code: hsb\n  name: Upper Sorbian\n  script: Latin\n  family: Slavic\n"
        "- {code: mt, name: Maltese, script: Latin, family: Semitic}\n",
        encoding="utf-8",
    )
    loaded = load_language_file(yml)
    assert [lang.code for lang in loaded] == ["hsb", "mt"]
    assert get_language("maltese").family == "Semitic"
    js = tmp_path / "extra.json"
    js.write_text(json.dumps([{"code": "eu", "name": "Basque", "script": "Latin"}]))
    assert load_language_file(js)[0] == Language("eu", "Basque", "Latin", "unknown")
    assert get_language("eu").family == "unknown"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("- code: hsb\n  name: Upper Sorbian\n", "entry 1 ('hsb'): missing script"),
        ("- code: a\n  name: A\n  script: Latin\n- 42\n", "entry 2: expected a mapping"),
        ("- {code: q, name: Q, script: Latin, familly: X}\n", "unknown key(s) familly"),
        ("- {code: q, name: Q, script: Latin}\n- {code: q, name: R, script: Latin}\n", "entry 2"),
        ("- {code: sk, name: Slowakisch, script: Latin}\n", "already registered"),
        ("code: sk\n", "expected a non-empty list"),
        ("- {code: q, name: [1], script: Latin}\n", "name must be a non-empty string"),
        ("- {code: q\n", "invalid YAML"),
    ],
)
def test_bad_language_file_names_file_and_entry(tmp_path, content, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(content, encoding="utf-8")
    before = all_languages()
    with pytest.raises(DataFormatError) as info:
        load_language_file(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)
    assert all_languages() == before  # nothing half-registered


def test_language_file_missing_or_wrong_extension(tmp_path):
    with pytest.raises(LangTransferError, match="does not exist"):
        load_language_file(tmp_path / "nope.yaml")
    txt = tmp_path / "langs.txt"
    txt.write_text("[]")
    with pytest.raises(DataFormatError, match=r"\.yaml, \.yml or \.json"):
        load_language_file(txt)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[{"code": "q",\n "name": }]')
    with pytest.raises(DataFormatError, match=r"bad\.json:2: invalid JSON"):
        load_language_file(bad_json)


def _run_cli(argv: list[str]) -> int:
    from langtransfer.cli import main

    return main(["languages", *argv])  # main loads --languages-file/--register first


def test_cli_table(capsys):
    assert _run_cli([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "code",
        "name",
        "script",
        "family",
        "source",
        "wikipedia",
        "config",
        "instruction",
    ]
    assert len(lines) == 2 + 16
    sk_row = next(line for line in lines if line.startswith("sk "))
    assert "Slovak" in sk_row and "20231101.sk" in sk_row
    assert sk_row.endswith("Generate the output in Slovak:")
    assert "yes" in next(line for line in lines if line.startswith("de "))


def test_cli_json_with_registered_file(tmp_path, capsys):
    path = tmp_path / "mine.yaml"
    path.write_text("- {code: mt, name: Maltese, script: Latin, family: Semitic}\n")
    assert _run_cli(["--json", "--register", str(path)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["code"] for r in rows] == [*PAPER_LANGUAGES, "mt"]
    assert rows[-1] == {
        "code": "mt",
        "name": "Maltese",
        "script": "Latin",
        "family": "Semitic",
        "wikipedia_max_articles": None,
        "instruction_native": None,
        "wikipedia_config": "20231101.mt",
        "instruction": "Generate the output in Maltese:",
        "source": False,
    }


def test_cli_verb_is_listed():
    from langtransfer.cli import VERBS

    assert "languages" in VERBS
