"""The representation-kind seam: each kind owns its behaviour, registered once; the
configuration layer reads kinds without loading torch; no code outside a kind's module
branches on a kind's name."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from langtransfer.configurations import ALL_CONFIGURATIONS, REPRESENTATION_KINDS, ROLES, SHORT_NAMES
from langtransfer.errors import LangTransferError, UnknownNameError
from langtransfer.representations.kinds import KINDS, SPEC_KEYS, get_kind
from langtransfer.representations.kinds.adapter import ADAPTER_CONFIGS, AdapterSpec
from langtransfer.representations.kinds.base import RepresentationKind, SpecContext
from langtransfer.training.settings import TrainSettings, default_settings

SRC = Path(__file__).resolve().parents[1] / "src" / "langtransfer"
DEMO = SRC / "configs" / "demo.yaml"


def test_the_registry_and_the_configuration_table_name_the_same_kinds():
    assert set(KINDS) == set(REPRESENTATION_KINDS)
    assert {k for c in ALL_CONFIGURATIONS.values() for k in c.kinds if k} <= set(KINDS)
    for name, kind in KINDS.items():
        assert isinstance(kind, RepresentationKind) and kind.name == name
        assert all((role, name) in SHORT_NAMES for role in ROLES)
    assert set(SPEC_KEYS) <= set(KINDS)  # the spec keys manifests always held


@pytest.mark.parametrize("name", sorted(KINDS))
def test_each_kind_declares_what_the_configuration_layer_reads(name):
    """Spec, options, training defaults and files: everything a study config, the CLI
    and the store read of a kind without loading a model."""
    kind = get_kind(name)
    assert is_dataclass(kind.spec_type) and callable(kind.spec_type.to_dict)
    spec_fields = {f.name for f in fields(kind.spec_type)}
    assert {o.key for o in kind.options} <= spec_fields
    assert all(o.flag.startswith("--") for o in kind.options)
    assert set(kind.training_defaults) <= {f.name for f in fields(TrainSettings)}
    assert kind.files and kind.combine_method and kind.label
    for role in ROLES:
        spec = kind.spec({}, SpecContext(role, "Slovak", "Generate in Slovak:"))
        assert isinstance(spec, kind.spec_type)
        settings = default_settings(name, role)
        assert {k: getattr(settings, k) for k in kind.training_defaults} == dict(
            kind.training_defaults)


def test_unknown_kinds_and_wrong_specs_are_refused_naming_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown representation kind 'lora'; valid: "
                                               "adapter, prompt"):
        get_kind("lora")
    with pytest.raises(UnknownNameError, match="representation kind 'lora'"):
        default_settings("lora", "task")
    with pytest.raises(LangTransferError, match="a prompt representation takes a PromptConfig, "
                                                "got AdapterSpec"):
        get_kind("prompt").check_spec(AdapterSpec())
    context = SpecContext("task", "English", "Answer:")
    with pytest.raises(UnknownNameError, match="unknown adapter option 'num_tokens'; valid: "
                                               "config, reduction_factor"):
        get_kind("adapter").spec({"num_tokens": 4}, context)


def test_adapter_config_names_are_the_installed_librarys():
    """The names are kept without importing `adapters` (which imports torch)."""
    from adapters.configuration.adapter_config import ADAPTER_CONFIG_MAP

    assert tuple(ADAPTER_CONFIG_MAP) == ADAPTER_CONFIGS
    with pytest.raises(UnknownNameError, match="unknown adapter config 'bottleneck'"):
        AdapterSpec(config="bottleneck")


def test_reading_and_planning_a_study_imports_no_torch():
    """The configuration layer (study config, its validation, the plan and its hashes)
    stays light: no torch, transformers, adapters or datasets."""
    code = (
        "import json, sys\n"
        "from langtransfer.study.load import load_study_config\n"
        "from langtransfer.study.jobs import plan\n"
        f"arts = plan(load_study_config({str(DEMO)!r}))\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'adapters', 'datasets', 'peft')\n"
        "               if m in sys.modules)\n"
        "print(json.dumps([len(arts), heavy]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    artefacts, heavy = json.loads(out.stdout.splitlines()[-1])
    assert artefacts > 0 and heavy == []


#: A branch on one kind's name: ``kind == "prompt"``, ``"adapter" in kinds``...
KIND_BRANCH = re.compile(
    r'"(?:%s)"\s*(?:not\s+)?in\b|[!=]=\s*"(?:%s)"|"(?:%s)"\s*[!=]=|isinstance\([^)]*SoftPrompt'
    % (("|".join(REPRESENTATION_KINDS),) * 3)
)
#: Files outside the kind modules that may branch on a kind, each saying why in a comment.
JUSTIFIED = {"representations/peft_format.py"}  # PEFT's prompt-tuning format: prompts only


def test_only_the_kind_modules_branch_on_a_kind():
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("representations/kinds/") or rel in JUSTIFIED:
            continue
        hits = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                if KIND_BRANCH.search(line)]
        if hits:
            found[rel] = hits
    assert found == {}
