"""Language representations without training: weighted combinations and proxies.

A *combination* is a language representation made from existing ones of one kind, as
the kind combines them (``RepresentationKind.combine``):

- prompts: the element-wise weighted sum of their embeddings (all of one length);
- adapters: the `adapters` library's ``average_adapter`` (``linear``: every adapter
  weight is the weighted sum of the parts' weights), on the base they fit.

A *proxy* is a combination for a language that has no representation, over its
relatives among the languages that have one (:func:`langtransfer.languages.relatives`:
family and script from the registry), or with weights the user gives.

The result is saved like any representation (manifest + safetensors) and its manifest's
``training.composed`` records what it is made of: each part's language, directory, id
and weight, the method, and where the weights came from. ``training.steps`` is 0.

Weights must be positive and sum to one (within 1e-6); ``normalize=True`` divides them
by their sum instead. A part given twice (the same directory or the same language), parts
of different kinds, roles, shapes or base models are refused with a one-line error
naming the value.

Importing this module loads no torch (the study config checks ``composed`` weights with
:func:`check_weights`); reading and writing representations does, when it happens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langtransfer.base.loading import FINGERPRINT_KEYS
from langtransfer.configurations import configuration_for
from langtransfer.errors import IncompatibleModelError, LangTransferError
from langtransfer.languages import get_language, relatives
from langtransfer.representations.base import Representation
from langtransfer.representations.fit import check_fit
from langtransfer.representations.kinds import kind_of

if TYPE_CHECKING:
    from langtransfer.composition.loaded_base import LoadedBase

#: How far the weights' sum may be from one.
TOLERANCE = 1e-6
Parts = Mapping[str | Path, float]


def check_weights(weights: Mapping[str, float], *, normalize: bool = False,
                  what: str = "combination") -> dict[str, float]:
    """``weights`` as a dict if each is a positive number and they sum to one (with
    ``normalize``: divided by their sum); else an error naming the bad value."""
    if not weights:
        raise LangTransferError(f"{what}: no parts to combine")
    out: dict[str, float] = {}
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w):
            raise LangTransferError(f"{what}: weight of {name} must be a number, got {w!r}")
        if w <= 0:
            raise LangTransferError(f"{what}: weight of {name} must be positive, got {w!r}")
        out[str(name)] = float(w)
    total = math.fsum(out.values())
    if normalize:
        return {name: w / total for name, w in out.items()}
    if abs(total - 1.0) > TOLERANCE:
        shown = ", ".join(f"{n}: {w:g}" for n, w in out.items())
        raise LangTransferError(
            f"{what}: weights {{{shown}}} sum to {total:g}, not 1; fix them or normalise "
            "(normalize=True)"
        )
    return out


def _load_parts(parts: Parts, loaded: LoadedBase | None) -> list[tuple[Representation, float]]:
    """Each part loaded (checked against ``loaded`` when given), refusing repeats."""
    from langtransfer.representations.store import load_representation

    reps: list[tuple[Representation, float]] = []
    seen: dict[str, str] = {}
    for location, weight in parts.items():
        rep = (loaded.representation(location) if loaded is not None
               else load_representation(location))
        check_fit(rep, "language", where=location, hint="only language ones combine")
        where = str(Path(rep.path).resolve()) if rep.path is not None else str(location)
        for key in (where, f"language {rep.language}"):
            if key in seen:
                raise LangTransferError(
                    f"part {location} repeats {key} (already given as {seen[key]}); "
                    "give each language once"
                )
            seen[key] = str(location)
        reps.append((rep, weight))
    first = reps[0][0]
    for rep, _ in reps[1:]:
        _check_same(first, rep)
    return reps


def _check_same(a: Representation, b: Representation) -> None:
    """Parts must be one kind, one shape, one base model."""
    if a.kind != b.kind:
        raise LangTransferError(
            f"part {b.where} is of kind {b.kind} but {a.where} of kind {a.kind}; a combination "
            "takes parts of one kind"
        )
    ba, bb = a.base_model or {}, b.base_model or {}
    diffs = [f"{k} {ba[k]} vs {bb[k]}" for k in FINGERPRINT_KEYS
             if k in ba and k in bb and ba[k] != bb[k]]
    if diffs:
        raise IncompatibleModelError(
            f"part {b.where} was trained on base model {bb.get('name')!r} but {a.where} on "
            f"{ba.get('name')!r} ({', '.join(diffs)}); a combination takes one base"
        )
    kind_of(a).check_combinable(a, b)


def combine_language_representations(
    parts: Parts,
    output: str | Path,
    *,
    language: str,
    model: str | LoadedBase | None = None,
    normalize: bool = False,
    weights_from: str = "user",
    settings_hash: str | None = None,
    overwrite: bool = False,
) -> Representation:
    """Write the weighted combination of ``parts`` (directory or hub id -> weight) as a
    language representation for ``language`` to ``output`` and return it loaded.

    Prompts need no model; adapters are averaged on ``model`` (a name or a
    :class:`~langtransfer.composition.loaded_base.LoadedBase`; the base the parts were trained on),
    which is left as it was. ``weights_from`` is recorded (``user``, ``registry``).
    """
    from langtransfer.representations.store import load_representation, save_representation

    code = get_language(language).code
    weights = check_weights({str(k): v for k, v in parts.items()}, normalize=normalize,
                            what=f"combination for {code}")
    loaded = None
    if model is not None:
        from langtransfer.composition.loaded_base import LoadedBase

        loaded = LoadedBase.of(model)
    reps = _load_parts(dict(zip(parts, weights.values(), strict=True)), loaded)
    kind = kind_of(reps[0][0])
    composed = {
        "language": code,
        "method": kind.combine_method,
        "weights_from": weights_from,
        "parts": [
            {"language": rep.language, "path": str(location), "id": rep.id, "weight": w}
            for (rep, w), location in zip(reps, parts, strict=True)
        ],
    }
    training: dict[str, Any] = {"steps": 0, "composed": composed}
    base = loaded.model if loaded is not None else None
    # Each part takes its slot on the base, as composing it would (a kind whose weights
    # live in the base combines them there); the base is left as it was.
    held = [] if loaded is None else [
        loaded.compose(configuration_for(rep.kind, None).name, language=rep) for rep, _ in reps
    ]
    try:
        rep = kind.combine(reps, base, language=code, training=training,
                           settings_hash=settings_hash)
        try:
            save_representation(rep, output, model=base, training=training,
                                 overwrite=overwrite)
        finally:
            if base is not None:
                kind.remove(base, rep)
    finally:
        for composed_model in held:
            composed_model.close()
    out = load_representation(output)
    assert out.kind == kind.name
    return out


def proxy_weights(language: str, available: list[str] | tuple[str, ...]) -> dict[str, float]:
    """The registry's weights for a proxy of ``language`` over ``available`` languages
    (see :func:`langtransfer.languages.relatives`)."""
    return relatives(language, available)


def build_proxy(
    language: str,
    available: Mapping[str, str | Path],
    output: str | Path,
    *,
    weights: Mapping[str, float] | None = None,
    model: str | LoadedBase | None = None,
    normalize: bool = False,
    settings_hash: str | None = None,
    overwrite: bool = False,
) -> Representation:
    """A proxy language representation for ``language`` from ``available`` (language
    code -> representation directory): weighted by :func:`proxy_weights`, or by
    ``weights`` (language -> weight, each one of ``available``)."""
    codes = {get_language(c).code: loc for c, loc in available.items()}
    if weights is None:
        chosen, source = proxy_weights(language, list(codes)), "registry"
    else:
        chosen = {}
        for c, w in weights.items():
            code = get_language(c).code
            if code not in codes:
                raise LangTransferError(
                    f"proxy for {language}: no representation of {code!r} is available "
                    f"(available: {', '.join(codes) or 'none'})"
                )
            if code in chosen:
                raise LangTransferError(f"proxy for {language}: language {code!r} given twice")
            chosen[code] = w
        source = "user"
    parts = {codes[c]: w for c, w in chosen.items()}
    return combine_language_representations(
        parts, output, language=language, model=model, normalize=normalize,
        weights_from=source, settings_hash=settings_hash, overwrite=overwrite,
    )
