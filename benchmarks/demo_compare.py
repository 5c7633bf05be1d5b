"""``python -m benchmarks.demo_compare [REF ...]``: the demo's wall time and peak memory per commit.

Each commit (default: ``fc3956b``, the first landing, and ``HEAD``) is exported with
``git archive`` into a temporary directory and its ``langtransfer demo`` run there with this
environment's Python (``PYTHONPATH`` set to that commit's ``src``), in turns A B A B ... so
that drift in the machine's load hits every commit alike. Prints, per commit, the median
wall time, the peak resident memory (GNU time's maximum RSS of the demo process) and the
base-model loads the study reports, then each commit's ratio to the first.

Run it alone on an idle machine: two torch processes on two cores slow each other
several-fold. The demo's model set-up (venv) is not included: both commits use this venv.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GNU_TIME = "/usr/bin/time"


def export(ref: str, into: Path) -> Path:
    """The tree of ``ref`` in ``into/<ref>`` (no checkout of the working tree)."""
    dest = into / re.sub(r"[^\w.-]", "_", ref)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref],
        check=True, capture_output=True,
    ).stdout
    archive_path = into / f"{dest.name}.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(dest, filter="data")
    archive_path.unlink()
    return dest


def run_demo(tree: Path, work: Path) -> dict[str, float | int | None]:
    """One demo run of the exported ``tree``; its wall time, peak RSS and base loads."""
    out = work / "run"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "langtransfer", "demo", "--output", str(out), "--quiet"]
    use_time = Path(GNU_TIME).exists()
    if use_time:
        cmd = [GNU_TIME, "-v", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-2000:] + proc.stderr[-4000:])
        raise SystemExit(f"the demo of {tree.name} failed (exit {proc.returncode})")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    loads = re.search(r"base loads?\D*(\d+)", proc.stdout + proc.stderr, re.IGNORECASE)
    return {
        "wall_s": wall,
        "peak_rss_mib": int(rss.group(1)) / 1024 if rss else None,
        "base_loads": int(loads.group(1)) if loads else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refs", nargs="*", default=["fc3956b", "HEAD"], help="commits to compare")
    parser.add_argument("--repeats", type=int, default=2, help="runs per commit (default 2)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="demo-compare-") as tmp:
        trees = {ref: export(ref, Path(tmp)) for ref in args.refs}
        runs: dict[str, list[dict]] = {ref: [] for ref in args.refs}
        for i in range(args.repeats):
            for ref in args.refs:
                work = Path(tmp) / f"work-{trees[ref].name}"
                work.mkdir(exist_ok=True)
                result = run_demo(trees[ref], work)
                runs[ref].append(result)
                print(f"run {i + 1} {ref}: {result}", file=sys.stderr, flush=True)
    first = args.refs[0]
    medians = {ref: statistics.median(r["wall_s"] for r in rs) for ref, rs in runs.items()}
    print(
        f"{'commit':<12} {'wall s (median)':>16} {'ratio':>6} {'peak RSS MiB':>13} "
        f"{'base loads':>11}"
    )
    for ref, rs in runs.items():
        rss = max((r["peak_rss_mib"] or 0) for r in rs) or float("nan")
        loads = rs[0]["base_loads"]
        print(f"{ref:<12} {medians[ref]:>16.1f} {medians[ref] / medians[first]:>6.2f} {rss:>13.0f} "
              f"{'?' if loads is None else loads:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
