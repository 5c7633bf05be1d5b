"""One loaded base model, shared by every training run and evaluation in a process.

mT0-base is 2.3 GB; loading it for every artefact of a study dominated the run time.
:class:`LoadedBase` loads it once and keeps its tokenizer and the representations read
for it (checked against it, cached by file identity). ``train_language``,
``train_task`` and ``evaluate`` take one (``model=LoadedBase``) or a name, which loads
one. Composition leaves nothing behind on the shared base: each composed model removes
the adapters it added and deactivates them when it closes, and prompts never touch the
base. :meth:`LoadedBase.weights_digest` lets a caller prove the frozen weights are
unchanged after each artefact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from langtransfer.base.families import family_of
from langtransfer.base.loading import DEFAULT_MODEL, load_base

if TYPE_CHECKING:  # torch and transformers load with the model, not for `--help`
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from langtransfer.composition.composed import ComposedModel
    from langtransfer.representations.base import Representation

#: Cached representation records per base (a prompt's weights live in its record).
CACHE_SIZE = 64


class LoadedBase:
    """A frozen base model, its tokenizer and a cache of representations loaded for it.

    ``LoadedBase.loads`` counts base loads in this process (the study reports it).
    """

    loads: ClassVar[int] = 0

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.family = family_of(model)  # seq2seq or causal: how it is fed and trained
        # The frozen weights are the parameters and buffers the model has before any
        # adapter is added; the digest covers exactly these.
        self._frozen = [n for n, _ in model.named_parameters()] + [
            n for n, _ in model.named_buffers()
        ]
        self._cache: dict[tuple, Representation] = {}

    @classmethod
    def load(
        cls, name: str = DEFAULT_MODEL, *, trust_remote_code: bool = False, torch_dtype: Any = None
    ) -> LoadedBase:
        """Load ``name`` (``tiny``, ``tiny-causal``, a local directory or a hub id) once;
        see ``load_base``."""
        model, tokenizer = load_base(
            name, trust_remote_code=trust_remote_code, torch_dtype=torch_dtype
        )
        cls.loads += 1
        return cls(model, tokenizer, name)

    @classmethod
    def of(cls, model: str | LoadedBase, *, trust_remote_code: bool = False) -> LoadedBase:
        """``model`` itself, or the base it names loaded (the path-taking entry points)."""
        if isinstance(model, LoadedBase):
            return model
        return cls.load(model, trust_remote_code=trust_remote_code)

    # -- representations ------------------------------------------------------------------

    def representation(self, location: str | Path) -> Representation:
        """The representation at ``location`` (a directory or a hub id), checked against
        this base. Cached while its files stay the same (a retrained artefact, written
        to a new directory by an atomic swap, is read again)."""
        from langtransfer.representations.fit import check_fit
        from langtransfer.representations.store import load_representation, resolve_location

        directory = resolve_location(location)
        key = (str(directory.resolve()), *_identity(directory))
        cached = self._cache.pop(key, None)
        if cached is None:
            cached = load_representation(directory)
            check_fit(cached, model=self.model, where=location)
        self._cache[key] = cached  # most recently used last
        while len(self._cache) > CACHE_SIZE:
            del self._cache[next(iter(self._cache))]
        return cached

    def compose(
        self,
        configuration: str,
        *,
        language: Representation | None = None,
        task: Representation | None = None,
        train: str | None = None,
        duplicate_language_prompt_in_forward: bool = False,
    ) -> ComposedModel:
        """A composed model on this base; close it (or use ``with``) when done.
        ``duplicate_language_prompt_in_forward``: see :class:`ComposedModel`."""
        from langtransfer.composition.composed import compose

        return compose(
            self.model, configuration, language=language, task=task, train=train,
            duplicate_language_prompt_in_forward=duplicate_language_prompt_in_forward,
        )

    def loaded(self) -> dict[str, Representation]:
        """The representations composed models currently hold in this base, by id."""
        from langtransfer.composition.composed import loaded_representations

        return loaded_representations(self.model)

    # -- the frozen weights -----------------------------------------------------------------

    def frozen_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        named: dict[str, torch.Tensor] = dict(self.model.named_parameters())
        named.update(self.model.named_buffers())
        for name in self._frozen:
            if name not in named:
                raise RuntimeError(f"base weight {name} is gone from the model")
            yield name, named[name]

    def weights_digest(self) -> str:
        """SHA-256 of the frozen base weights (names, dtypes, shapes, bytes), adapters
        excluded. It reads the tensors in place (no copy): about a second per GB."""
        import torch

        digest = hashlib.sha256()
        for name, tensor in self.frozen_tensors():
            t = tensor.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            t = t.contiguous()
            digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}\0".encode())
            if t.numel():
                # uint8 views of any dtype (bf16 has no numpy type) share the storage;
                # numpy arrays are buffers (their type stubs do not say so).
                data: Any = t.reshape(-1).view(torch.uint8).numpy()
                digest.update(data)
        return digest.hexdigest()

    def __repr__(self) -> str:
        return f"LoadedBase({self.name!r}, {len(self.loaded())} representations loaded)"


def _identity(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a directory's files are replaced or rewritten: each file's name,
    inode, size and mtime."""
    stats = ((p.name, p.stat()) for p in sorted(directory.iterdir()) if p.is_file())
    return tuple((name, s.st_ino, s.st_size, s.st_mtime_ns) for name, s in stats)
