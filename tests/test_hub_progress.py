"""Hub loads in a study (progress off) print no progress bars; warnings still print.

Loads come from the offline hub mirror of ``tests/test_sources.py`` through the real
``snapshot_download`` + ``load_dataset("parquet", ...)`` path."""

from __future__ import annotations

import logging

import datasets
from huggingface_hub.utils import are_progress_bars_disabled
from test_sources import hub  # noqa: F401  (the mirror fixture)

from langtransfer.tasks import get_task
from langtransfer.tasks.sources import progress_bars

ROWS = [{"premise": f"Prem {i}.", "hypothesis": "Hyp.", "label": i % 3} for i in range(6)]
BAR = "Generating train split"


def test_a_load_with_progress_prints_the_datasets_bar(hub, capfd):  # noqa: F811
    hub("facebook/xnli", {"de/test/0000.parquet": ROWS})
    assert len(get_task("nli").load("de", "test")) == 6
    assert BAR in capfd.readouterr().err  # what the quiet path must not print


def test_evaluate_without_progress_prints_no_hub_bars(hub, tmp_path, capfd):  # noqa: F811
    from langtransfer.inference.evaluate import evaluate

    hub("facebook/xnli", {"de/test/0000.parquet": ROWS})
    record = evaluate(model="tiny", task="nli", language="de", output=tmp_path / "eval",
                      max_new_tokens=2, show_progress=False)
    assert record["n_examples"] == 6
    err = capfd.readouterr().err
    assert BAR not in err and "Fetching" not in err
    assert datasets.is_progress_bar_enabled() and not are_progress_bars_disabled()


def test_quiet_loads_keep_warnings_and_restore_the_bars(hub, capfd, caplog):  # noqa: F811
    hub("facebook/xnli", {"de/test/0000.parquet": ROWS})
    verbosity = datasets.logging.get_verbosity()
    with progress_bars(False):
        assert not datasets.is_progress_bar_enabled() and are_progress_bars_disabled()
        assert len(get_task("nli").load("de", "test")) == 6
        assert datasets.logging.get_verbosity() == verbosity  # warnings are not muted
        logging.getLogger("datasets.builder").warning("a real warning")
    assert BAR not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == [
        "a real warning"]
    assert datasets.is_progress_bar_enabled() and not are_progress_bars_disabled()
