"""Shared fixtures: the embedded tiny model and paths to shipped data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# `make test` runs two pytest workers on two cores: one thread each (inherited by the
# subprocesses tests start), since oversubscribed OpenMP threads spin and run ~10x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Data digests (langtransfer.study.fingerprints) are cached on disk: in a directory of the
# run's own, not the user's ~/.cache.
os.environ.setdefault("LANGTRANSFER_CACHE_DIR", tempfile.mkdtemp(prefix="langtransfer-cache-"))

# Tests fork children and SIGKILL them (tests/test_reliability.py). tqdm guards every bar,
# even a disabled one, with a multiprocessing lock: a semaphore a forked child shares with
# its parent. A child killed while holding it left the parent's next bar waiting forever
# (a CI run hung so). tqdm's own fallback where multiprocessing is missing, a lock local to
# the process, and no monitor thread that could hold that lock at a fork, keep a child's
# death its own. Set before any bar exists: the lock is created with the first one.
from tqdm.std import TqdmDefaultWriteLock, tqdm  # noqa: E402

TqdmDefaultWriteLock.mp_lock = None
tqdm.monitor_interval = 0

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module's tests (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): `make test` runs two workers on two cores, and
    spinning OpenMP threads fighting over them cost more CPU than they save."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    """A fresh tiny model and tokenizer (fresh: adapters get attached to it)."""
    from langtransfer.base.loading import load_base

    return load_base("tiny")


@pytest.fixture
def xquad_dir() -> Path:
    path = SHARED_DATA / "xquad"
    if not path.is_dir():
        pytest.skip(f"real XQuAD files not found at {path} (../shared beside the repo)")
    return path
