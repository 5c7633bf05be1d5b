"""A local mirror of ``wikimedia/wikipedia`` laid out as the hub serves it (a README whose
YAML lists one config per dump, ``<config>/train-*.parquet`` with id, url, title, text),
and the one substitution tests make: the hub id -> the mirror directory. The reading is
``datasets``' own (``load_dataset(..., streaming=True)`` over the parquet files).

Run as a script it starts ``langtransfer`` with the mirror installed (for tests that kill
a training process)::

    python tests/wikipedia_mirror.py MIRROR_DIR train-language --corpus wikipedia ...
"""

from __future__ import annotations

import sys
from pathlib import Path

WIKIPEDIA = "wikimedia/wikipedia"


def write_mirror(root: Path, articles: dict[str, list[str]]) -> Path:
    """``articles``: wikipedia config (e.g. ``20231101.sk``) -> article texts."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    configs = []
    for config, texts in articles.items():
        (root / config).mkdir(exist_ok=True)
        n = len(texts)
        table = pa.table(
            {
                "id": [str(i) for i in range(n)],
                "url": [f"https://x/{i}" for i in range(n)],
                "title": [f"T{i}" for i in range(n)],
                "text": texts,
            }
        )
        pq.write_table(table, root / config / "train-00000-of-00001.parquet")
        configs.append(f"- config_name: {config}\n  data_files:\n  - split: train\n"
                       f"    path: {config}/train-*\n")
    (root / "README.md").write_text(
        "---\nconfigs:\n" + "".join(configs) + "---\n", encoding="utf-8"
    )
    return root


def mirrored_load_dataset(mirror: Path, calls: list | None = None):
    """``datasets.load_dataset`` with the Wikipedia hub id read from ``mirror``."""
    import datasets

    real = datasets.load_dataset

    def load_dataset(path, *args, **kwargs):
        if path == WIKIPEDIA:
            if calls is not None:
                calls.append((args, kwargs))
            path = str(mirror)
        return real(path, *args, **kwargs)

    return load_dataset


def install(mirror: Path) -> None:
    import datasets

    datasets.load_dataset = mirrored_load_dataset(mirror)


if __name__ == "__main__":
    from langtransfer.cli import main

    install(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
