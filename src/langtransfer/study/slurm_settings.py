"""The ``slurm`` section of a study config: what every job of ``--executor slurm`` asks
Slurm for. Not part of the study's fingerprint or of any hash: where and how a study
runs does not change what it builds.

```yaml
slurm:
  partition: gpu
  gpus: 1             # sbatch --gpus (per job)
  time: "2-00:00:00"  # sbatch --time
  account: my-project
  cpus: 8             # sbatch --cpus-per-task
  mem: 32G            # sbatch --mem
  sbatch: ["--qos=normal", "--constraint=a100"]   # more sbatch options, as written
```

Command-line options (``--partition``, ``--gpus``, ...) override these, key by key.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, fields, replace
from typing import Any

from langtransfer.errors import LangTransferError, UnknownNameError

#: Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
#: days-hours:minutes, days-hours:minutes:seconds; or "infinite"/"unlimited".
TIME_RE = re.compile(
    r"^(\d+(:\d{1,2}){0,2}|\d+-\d{1,2}(:\d{1,2}){0,2}|infinite|unlimited|INFINITE|UNLIMITED)$"
)
#: sbatch --mem: a number with an optional unit (K, M, G, T; default M).
MEM_RE = re.compile(r"^\d+[KMGT]?B?$", re.IGNORECASE)
#: A partition or account name (Slurm allows no whitespace or commas in either).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class SlurmSettings:
    """What each job asks for; None leaves it to the cluster's defaults. ``sbatch``: more
    options, each as written on an sbatch command line (``--qos=normal``) or a job
    script (``#SBATCH --qos=normal``); they come last, so they win over the others."""

    partition: str | None = None
    account: str | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    sbatch: tuple[str, ...] = ()

    def merged(self, **values: Any) -> SlurmSettings:
        """These settings with every given (not None) value replaced, checked; ``sbatch``
        lines add to the config's."""
        given = {k: v for k, v in values.items() if v not in (None, [], ())}
        if "sbatch" in given:
            given["sbatch"] = (*self.sbatch, *given["sbatch"])
        return parse_slurm({**self.to_dict(), **given}, "command line")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def options(self, *, gpus: bool = True) -> list[str]:
        """The sbatch options these settings stand for (without ``gpus``/``cpus``/``mem``
        for a job that needs no accelerator, e.g. the report's)."""
        values = self if gpus else replace(self, gpus=None, cpus=None, mem=None)
        flags = {"partition": "--partition", "account": "--account", "gpus": "--gpus",
                 "cpus": "--cpus-per-task", "mem": "--mem", "time": "--time"}
        out = [f"{flag}={getattr(values, key)}" for key, flag in flags.items()
               if getattr(values, key) is not None]
        for line in self.sbatch:
            out += shlex.split(line.removeprefix("#SBATCH"))
        return out


def parse_slurm(raw: Any, where: str = "study config") -> SlurmSettings:
    """The ``slurm`` section checked: each bad value is a one-line error naming it."""
    if raw is None:
        return SlurmSettings()
    if not isinstance(raw, dict):
        raise LangTransferError(f"{where}: 'slurm' must be a mapping of Slurm options, got "
                                f"{raw!r:.60}")
    valid = [f.name for f in fields(SlurmSettings)]
    for key in raw:
        if key not in valid:
            raise UnknownNameError("key in slurm", key, valid)

    def bad(key: str, wanted: str) -> LangTransferError:
        return LangTransferError(f"{where}: slurm.{key} must be {wanted}, got {raw[key]!r:.60}")

    values: dict[str, Any] = {}
    for key in ("gpus", "cpus"):
        value = raw.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                      and value >= (0 if key == "gpus" else 1)):
            raise bad(key, "a whole number" + (" (0 or more)" if key == "gpus" else " >= 1"))
        values[key] = value
    for key, pattern, wanted in (
        ("partition", NAME_RE, "a partition name"),
        ("account", NAME_RE, "an account name"),
        ("mem", MEM_RE, "a memory size such as 32G or 16000M"),
        ("time", TIME_RE, "a Slurm time limit such as 24:00:00, 2-00:00:00 or 90 (minutes)"),
    ):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and key in ("mem", "time"):
            value = str(value)
        if value is not None and not (isinstance(value, str) and pattern.match(value)):
            raise bad(key, wanted)
        values[key] = value
    lines = raw.get("sbatch", ())
    if isinstance(lines, str):
        lines = [lines]
    if not isinstance(lines, (list, tuple)) or not all(isinstance(x, str) for x in lines):
        raise bad("sbatch", "a list of sbatch options such as ['--qos=normal']")
    for line in lines:
        try:
            words = shlex.split(line.removeprefix("#SBATCH"))
        except ValueError as e:
            raise LangTransferError(f"{where}: slurm.sbatch line {line!r}: {e}") from None
        if not words or not words[0].startswith("-"):
            raise LangTransferError(
                f"{where}: slurm.sbatch line {line!r} is not an sbatch option (e.g. "
                "'--qos=normal' or '#SBATCH --constraint=a100')"
            )
        taken = [w for w in words if w.split("=")[0] in RESERVED]
        if taken:
            raise LangTransferError(
                f"{where}: slurm.sbatch line {line!r} sets {taken[0].split('=')[0]}, which "
                f"the executor sets for each job ({', '.join(RESERVED)})"
            )
    values["sbatch"] = tuple(lines)
    return SlurmSettings(**values)


#: sbatch options the executor sets per job: a user's would break the wiring.
RESERVED = ("--dependency", "-d", "--job-name", "-J", "--output", "-o", "--error", "-e",
            "--parsable", "--array", "-a", "--wrap", "--kill-on-invalid-dep", "--open-mode",
            "--chdir", "-D")
