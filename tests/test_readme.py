"""The README's first Python block runs as pasted."""

import os
import re

from conftest import REPO


def test_readme_python_example_runs(tmp_path, capsys):
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("slp+ta ")
    assert int(out[0].split()[1]) > 0
    assert out[1] == "cs qa"
    assert (tmp_path / "runs/readme/task-qa/manifest.json").is_file()
    assert (tmp_path / "runs/readme/task-qa/adapter.safetensors").is_file()
