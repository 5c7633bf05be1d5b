"""The language registry: the paper's 16 languages plus any the user registers.

Script and family are kept per language because the paper finds that transfer depends on
script, and reports group results by both. A language's English name is what the soft
language prompt is initialised from (``Generate the output in Slovak:``), so it is data
here, not a string built in several places.

Users add languages without editing the package, either in code
(:func:`register_language`) or from a YAML/JSON file (:func:`load_language_file`).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from langtransfer.errors import DataFormatError, LangTransferError, UnknownNameError

# The Wikipedia snapshot the paper trained language representations on.
WIKIPEDIA_DATASET = "wikimedia/wikipedia"
WIKIPEDIA_SNAPSHOT = "20231101"
# The reference trains English on the dump's first million articles (train[:1000000],
# validation from the articles after them); every other dump on its first 5%
# (train[:5%], validation from train[5%:]); see langtransfer.training.corpora.
ENGLISH_WIKIPEDIA_CAP = 1_000_000

#: The paper's language-prompt instruction; ``{Language}`` is the English name.
INSTRUCTION_TEMPLATE = "Generate the output in {Language}:"
#: The template name that stands for a language's own ``instruction_native``.
NATIVE_INSTRUCTION = "native"

_CODE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class Language:
    """One language: ISO-style code, English name, writing system and family.

    ``wikipedia_max_articles``: how many of the Wikipedia dump's first articles language
    training uses (English: 1M, as the reference); ``None``: the first 5% of the dump, as
    the reference takes every other language. Validation comes from the articles after.
    ``instruction_native``: the paper's instruction written in the language itself (the
    ``instruction: [native]`` study axis initialises prompts from it); ``None``: unknown.
    """

    code: str
    name: str
    script: str
    family: str = "unknown"
    wikipedia_max_articles: int | None = None
    instruction_native: str | None = None

    @property
    def wikipedia_config(self) -> str:
        """The ``wikimedia/wikipedia`` config holding this language's dump."""
        return f"{WIKIPEDIA_SNAPSHOT}.{self.code}"

    @property
    def instruction(self) -> str:
        """The text a soft language prompt is initialised from."""
        return INSTRUCTION_TEMPLATE.replace("{Language}", self.name)

    def instruction_from(self, template: str) -> str:
        """The instruction of ``template``: :data:`NATIVE_INSTRUCTION` is the language's
        own ``instruction_native``; any other text has ``{Language}`` replaced by the
        English name (the paper's template gives :attr:`instruction`)."""
        if template != NATIVE_INSTRUCTION:
            return template.replace("{Language}", self.name)
        if self.instruction_native is None:
            raise LangTransferError(
                f"language {self.code!r} ({self.name}) has no instruction_native; give one "
                "in its languages file or drop the 'native' instruction variant"
            )
        return self.instruction_native

    @property
    def is_source(self) -> bool:
        """Whether the paper trains task representations in this language."""
        return self.code in SOURCE_LANGUAGES

    def to_dict(self) -> dict[str, Any]:
        """Fields plus the derived values, as the CLI's ``--json`` prints them."""
        return {
            **asdict(self),
            "wikipedia_config": self.wikipedia_config,
            "instruction": self.instruction,
            "source": self.is_source,
        }


# The paper's instruction in each language itself, written for this project (not checked
# by native speakers; a user's languages file may give its own ``instruction_native``).
_NATIVE = {
    "ar": "أنشئ المخرجات باللغة العربية:",
    "bg": "Генерирай изхода на български език:",
    "cs": "Vygeneruj výstup v češtině:",
    "de": "Erzeuge die Ausgabe auf Deutsch:",
    "el": "Δημιούργησε την έξοδο στα ελληνικά:",
    "en": "Generate the output in English:",
    "es": "Genera la salida en español:",
    "ml": "ഔട്ട്പുട്ട് മലയാളത്തിൽ സൃഷ്ടിക്കുക:",
    "ro": "Generează rezultatul în limba română:",
    "ru": "Сгенерируй вывод на русском языке:",
    "sl": "Ustvari izhod v slovenščini:",
    "sk": "Vygeneruj výstup v slovenčine:",
    "sw": "Toa matokeo kwa Kiswahili:",
    "te": "అవుట్‌పుట్‌ను తెలుగులో రూపొందించండి:",
    "ur": "آؤٹ پٹ اردو میں تیار کریں:",
    "zh": "用中文生成输出：",
}

_PAPER = [
    Language("ar", "Arabic", "Arabic", "Semitic", instruction_native=_NATIVE["ar"]),
    Language("bg", "Bulgarian", "Cyrillic", "Slavic", instruction_native=_NATIVE["bg"]),
    Language("cs", "Czech", "Latin", "Slavic", instruction_native=_NATIVE["cs"]),
    Language("de", "German", "Latin", "Germanic", instruction_native=_NATIVE["de"]),
    Language("el", "Greek", "Greek", "Hellenic", instruction_native=_NATIVE["el"]),
    Language(
        "en", "English", "Latin", "Germanic", wikipedia_max_articles=ENGLISH_WIKIPEDIA_CAP,
        instruction_native=_NATIVE["en"],
    ),
    Language("es", "Spanish", "Latin", "Romance", instruction_native=_NATIVE["es"]),
    Language("ml", "Malayalam", "Malayalam", "Dravidian", instruction_native=_NATIVE["ml"]),
    Language("ro", "Romanian", "Latin", "Romance", instruction_native=_NATIVE["ro"]),
    Language("ru", "Russian", "Cyrillic", "Slavic", instruction_native=_NATIVE["ru"]),
    Language("sl", "Slovenian", "Latin", "Slavic", instruction_native=_NATIVE["sl"]),
    Language("sk", "Slovak", "Latin", "Slavic", instruction_native=_NATIVE["sk"]),
    Language("sw", "Swahili", "Latin", "Bantu", instruction_native=_NATIVE["sw"]),
    Language("te", "Telugu", "Telugu", "Dravidian", instruction_native=_NATIVE["te"]),
    Language("ur", "Urdu", "Arabic", "Indo-Aryan", instruction_native=_NATIVE["ur"]),
    Language("zh", "Chinese", "Han", "Sinitic", instruction_native=_NATIVE["zh"]),
]

#: The 16 languages of the paper, in its order (alphabetical by English name).
PAPER_LANGUAGES: tuple[str, ...] = tuple(lang.code for lang in _PAPER)
#: Languages the paper trains task representations in.
SOURCE_LANGUAGES: tuple[str, ...] = ("en", "de", "es", "ar", "ru", "zh")

_REGISTRY: dict[str, Language] = {lang.code: lang for lang in _PAPER}


def get_language(code_or_name: str | Language) -> Language:
    """Look a language up by code or English name, ignoring case."""
    if isinstance(code_or_name, Language):
        return code_or_name
    key = str(code_or_name).strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    for lang in _REGISTRY.values():
        if lang.name.lower() == key:
            return lang
    raise UnknownNameError("language", code_or_name, _REGISTRY)


def all_languages() -> list[Language]:
    """Every registered language: the paper's 16 first, then the user's in order added."""
    return list(_REGISTRY.values())


def _make_language(
    code: object,
    name: object,
    script: object,
    family: object = "unknown",
    wikipedia_max_articles: object = None,
    instruction_native: object = None,
) -> Language:
    """Validate and normalise the fields of a new language (``ValueError`` when bad)."""
    for field_name, value in (("name", name), ("script", script), ("family", family)):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{field_name} must be a non-empty string, got {value!r}")
    if not isinstance(code, str) or not _CODE_RE.match(code.strip().lower()):
        raise ValueError(
            f"code must be letters and digits, optionally with '-' parts (like 'sk' or "
            f"'zh-min-nan'), got {code!r}"
        )
    if wikipedia_max_articles is not None and (
        isinstance(wikipedia_max_articles, bool)
        or not isinstance(wikipedia_max_articles, int)
        or wikipedia_max_articles < 1
    ):
        raise ValueError(
            f"wikipedia_max_articles must be a positive integer or null, "
            f"got {wikipedia_max_articles!r}"
        )
    if instruction_native is not None and (
        not isinstance(instruction_native, str) or not instruction_native.strip()
    ):
        raise ValueError(
            f"instruction_native must be a non-empty string or null, got {instruction_native!r}"
        )
    assert isinstance(name, str) and isinstance(script, str) and isinstance(family, str)
    return Language(
        code.strip().lower(), name.strip(), script.strip(), family.strip(), wikipedia_max_articles,
        instruction_native.strip() if isinstance(instruction_native, str) else None,
    )


def _check_conflicts(lang: Language, replace: bool) -> None:
    old = _REGISTRY.get(lang.code)
    if old is not None and old != lang and not replace:
        raise ValueError(
            f"language {lang.code!r} is already registered as {old.name} ({old.script}, "
            f"{old.family}); pass replace=True to redefine it"
        )
    for other in _REGISTRY.values():
        if other.code != lang.code and other.name.lower() == lang.name.lower():
            raise ValueError(
                f"name {lang.name!r} already belongs to language {other.code!r}; "
                "names must be unique so lookups by name are unambiguous"
            )


def register_language(
    code: str,
    name: str,
    script: str,
    family: str = "unknown",
    *,
    wikipedia_max_articles: int | None = None,
    instruction_native: str | None = None,
    replace: bool = False,
) -> Language:
    """Add a language to the registry and return it.

    Registering an identical language again is a no-op, so a language file can be loaded
    twice; redefining an existing code needs ``replace=True``, because silently changing
    a built-in's name would change its prompt initialisation.
    """
    try:
        lang = _make_language(
            code, name, script, family, wikipedia_max_articles, instruction_native
        )
        _check_conflicts(lang, replace)
    except ValueError as e:
        raise LangTransferError(f"cannot register language: {e}") from e
    _REGISTRY[lang.code] = lang
    return lang


_FILE_KEYS = tuple(f.name for f in fields(Language))


def _read_language_file(path: Path) -> Any:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise LangTransferError(f"language file {path} does not exist") from None
    except OSError as e:
        raise DataFormatError(path, f"cannot read: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataFormatError(path, f"not UTF-8 text ({e.reason})", line) from e
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, f"invalid JSON: {e.msg}", e.lineno) from e
        except (ValueError, RecursionError) as e:  # 5000-digit integers, deep nesting
            raise DataFormatError(path, f"invalid JSON: {e or 'nested too deeply'}") from e
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = mark.line + 1 if mark is not None else None
            raise DataFormatError(path, f"invalid YAML: {e}", at) from e
        except RecursionError as e:
            raise DataFormatError(path, "invalid YAML: nested too deeply") from e
    raise DataFormatError(path, "unsupported extension; use .yaml, .yml or .json")


def load_language_file(path: str | Path, *, replace: bool = False) -> list[Language]:
    """Register the languages listed in a YAML or JSON file and return them.

    The file holds a list of mappings with keys ``code``, ``name``, ``script`` and
    optionally ``family``, ``wikipedia_max_articles`` and ``instruction_native``. Every
    entry is checked before any is registered, so a bad file changes nothing.
    """
    path = Path(path)
    data = _read_language_file(path)
    if not isinstance(data, list) or not data:
        raise DataFormatError(
            path, "expected a non-empty list of languages (mappings with code, name, script)"
        )
    langs: list[Language] = []
    for i, entry in enumerate(data, start=1):
        label = f"entry {i}"
        if isinstance(entry, dict) and isinstance(entry.get("code"), str):
            label += f" ({entry['code']!r})"
        if not isinstance(entry, dict):
            raise DataFormatError(path, f"{label}: expected a mapping, got {entry!r}")
        missing = [k for k in ("code", "name", "script") if k not in entry]
        unknown = sorted(map(str, set(entry) - set(_FILE_KEYS)))
        if missing or unknown:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            problems += [f"unknown key(s) {', '.join(map(str, unknown))}"] if unknown else []
            raise DataFormatError(
                path, f"{label}: {'; '.join(problems)} (keys: {', '.join(_FILE_KEYS)})"
            )
        try:
            lang = _make_language(**entry)
            _check_conflicts(lang, replace)
            for earlier in langs:
                if lang.code == earlier.code or lang.name.lower() == earlier.name.lower():
                    raise ValueError(f"duplicates an earlier entry ({earlier.code!r})")
        except ValueError as e:
            raise DataFormatError(path, f"{label}: {e}") from e
        langs.append(lang)
    for lang in langs:
        _REGISTRY[lang.code] = lang
    return langs


def relatives(code: str, candidates: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Proxy weights for ``code`` over ``candidates``, from the registry's family and script.

    Each candidate (other than ``code`` itself) scores one point for sharing ``code``'s
    family and one for sharing its script (a family ``unknown`` is shared with nobody);
    the weights are the scores divided by their sum, in the candidates' order, and
    candidates that score nothing are left out. So Slovak over (Czech, Russian, German)
    is Czech 2/4 (Slavic, Latin), Russian 1/4 (Slavic), German 1/4 (Latin). A language
    with no relative among the candidates is an error naming both.
    """
    lang = get_language(code)
    scores: dict[str, int] = {}
    for candidate in candidates:
        other = get_language(candidate)
        if other.code == lang.code or other.code in scores:
            continue
        family = lang.family != "unknown" and other.family == lang.family
        score = int(family) + int(other.script == lang.script)
        if score:
            scores[other.code] = score
    if not scores:
        listed = ", ".join(get_language(c).code for c in candidates) or "none"
        raise LangTransferError(
            f"no relative of language {lang.code!r} ({lang.family}, {lang.script} script) "
            f"among {listed}: a proxy needs one of the same family or script; give its "
            "weights instead"
        )
    total = sum(scores.values())
    return {c: s / total for c, s in scores.items()}
