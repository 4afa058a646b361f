"""A comparisons file: variants and comparisons of the user's own, on top of nbkit's 23 variants
and its comparisons, in TOML (or YAML, the same keys). The schema, in one place:

    [variants.small-cnn]                       # a name of its own: letters, digits, . _ + -
    model = "examples.my_models:SmallCNN"      # timm/<name>, package.module:callable, or one of nbkit's
    description = "three conv blocks, 32-64-128 channels"        # one line; default: what it changes
    model_kwargs = { width = 32 }              # keyword arguments of a timm/ or import-path model

    [variants.small-cnn-clr]
    base = "small-cnn"                         # a variant (nbkit's or this file's) it changes
    constant_lr = 1e-4                         # any setting (nbkit train --help, --set): what differs

    [comparisons.mine]
    question = "Does a small CNN of my own match resnet18 at a fraction of its size?"
    variants = ["resnet18", "toy-dilated", "small-cnn"]          # nbkit's and this file's
    baseline = "resnet18"                      # the variant the others are measured against; default: the first
    expected = "small-cnn within 2 points of resnet18"           # what you expect, shown beside the results

A variant has a base, a model, or both. Everything is checked when the file is read: unknown
keys and settings (with the closest valid name), unknown variants, circular bases, names taken by
nbkit's variants or comparisons, and settings out of range, each as one line naming the file and
the key. `check_models` builds a file's models and runs each once (on the meta device where it
can), so a model that cannot be built, or whose output is not (batch, classes), is refused too.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import typing
from dataclasses import dataclass, field
from pathlib import Path

from nbkit.design.comparisons import COMPARISONS, Comparison
from nbkit.design.settings import KEYS, Settings, plain_yaml_loader
from nbkit.design.variants import VARIANTS, Variant
from nbkit.errors import SettingsError, closest

FILE_KEYS = ("variants", "comparisons")
VARIANT_KEYS = ("base", "description")  # and any setting
COMPARISON_KEYS = ("question", "variants", "baseline", "expected")
MAX_FILE_BYTES = 1 << 20  # a comparisons file is a few KiB
MAX_BASES = 100  # a chain of bases (a variant of a variant of ...)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}")  # a run folder's and a report file's name


class StudyError(ValueError):
    """A comparisons file that cannot be used: one line naming the file and the key."""

    def __init__(self, path, key: str, message: str):
        super().__init__(f"{path}: {key}: {message}" if key else f"{path}: {message}")


@dataclass(frozen=True)
class Study:
    """nbkit's variants and comparisons, and a comparisons file's on top (source: that file)."""
    variants: dict[str, Variant]
    comparisons: dict[str, Comparison]
    source: Path | None = None
    variant_search: dict = field(default_factory=dict)  # a file's variant -> its search space (search_space)
    comparison_search: dict = field(default_factory=dict)  # a file's comparison -> its search space

    @property
    def own_variants(self) -> list[str]:
        return [n for n, v in self.variants.items() if v.source is not None]

    @property
    def own_comparisons(self) -> list[Comparison]:
        return [c for c in self.comparisons.values() if c.source is not None]


def builtin() -> Study:
    """nbkit's own variants and comparisons."""
    return Study(dict(VARIANTS), dict(COMPARISONS))


def load_study(path: str | Path | None) -> Study:
    """nbkit's variants and comparisons plus those of the file at path (None: nbkit's alone)."""
    if path is None or str(path) == "":
        return builtin()
    path = Path(path)
    raw = read_file(path)
    _check_keys(raw, FILE_KEYS, path, "", "a [variants.NAME] or [comparisons.NAME] table")
    own_variants = _tables(raw, "variants", path)
    own_comparisons = _tables(raw, "comparisons", path)
    if not own_variants and not own_comparisons:
        raise StudyError(path, "", "no variants or comparisons; expected [variants.NAME] or [comparisons.NAME] tables")
    _check_names(path, own_variants, own_comparisons)
    searches = {kind: _searches(tables, kind, path) for kind, tables in
                (("variants", own_variants), ("comparisons", own_comparisons))}  # taken out of the entries
    variants = {**VARIANTS, **_variants(own_variants, path)}
    comparisons = {**COMPARISONS, **{n: _comparison(n, e, variants, path) for n, e in own_comparisons.items()}}
    return Study(variants, comparisons, path, searches["variants"], searches["comparisons"])


def _searches(tables: dict, kind: str, path: Path) -> dict:
    """Each entry's `search` table (nbkit.design.search_space), removed from the entry."""
    from nbkit.design.search_space import SearchError, parse_search

    out = {}
    for name, entry in tables.items():
        if "search" in entry:
            try:
                out[name] = parse_search(entry.pop("search"), f"{kind}.{name}.search")
            except SearchError as e:
                raise StudyError(path, e.key, str(e)) from None
    return out


def read_file(path: Path) -> dict:
    """The file's top-level mapping: TOML (.toml) or YAML (.yml, .yaml); duplicate keys refused."""
    if path.suffix not in (".toml", ".yml", ".yaml"):  # said before anything is read (/dev/zero is no such file)
        raise StudyError(path, "", "expected a comparisons file ending in .toml, .yml or .yaml")
    try:
        text = _read_bounded(path).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(path, "", f"cannot read the comparisons file ({type(e).__name__}: {e.strerror or e})"
                         if isinstance(e, OSError) else "cannot read the comparisons file (not UTF-8 text)") from None
    if path.suffix == ".toml":
        data = _toml(text, path)
    elif path.suffix in (".yml", ".yaml"):
        data = _yaml(text, path)
    else:
        raise StudyError(path, "", "expected a comparisons file ending in .toml, .yml or .yaml")
    if not isinstance(data, dict):
        raise StudyError(path, "", f"expected tables of variants and comparisons, got {type(data).__name__}")
    return data


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_FILE_BYTES; OSError for a FIFO or device (refused
    at once, never waited on or read without end) or a larger file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES:,} bytes")
    return data


def _toml(text: str, path: Path) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise StudyError(path, "", "reading TOML needs Python 3.11 or pip install tomli; or write it as "
                                       "YAML (.yml)") from None
    try:
        return tomllib.loads(text)
    except (ValueError, RecursionError) as e:  # duplicate keys, and a number of thousands of digits, among them
        raise StudyError(path, "", f"not valid TOML ({str(e):.200}{'' if e else 'nested too deeply'})") from None


def _yaml(text: str, path: Path):
    import yaml

    class Loader(plain_yaml_loader()):  # no anchors or aliases: a few hundred bytes of them expand to gigabytes
        pass

    def mapping(loader, node):
        seen = set()
        for k, _ in node.value:
            key = loader.construct_object(k)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", node.start_mark)
            if isinstance(key, typing.Hashable):
                seen.add(key)
        return loader.construct_mapping(node, deep=True)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    try:
        return yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader that refuses duplicate keys
    except (yaml.YAMLError, ValueError, RecursionError) as e:  # a number of thousands of digits among them
        raise StudyError(path, "", f"not valid YAML ({' '.join(str(e).split())[:200] or 'nested too deeply'})") from None


def _check_keys(entry: dict, allowed, path: Path, key: str, expected: str) -> None:
    for k in entry:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            raise StudyError(path, where, f"unknown key{closest(str(k), allowed)} Expected {expected}")


def _tables(raw: dict, kind: str, path: Path) -> dict:
    tables = raw.get(kind) or {}
    if not isinstance(tables, dict):
        raise StudyError(path, kind, f"expected a table of {kind} by name, got {type(tables).__name__}")
    for name, entry in tables.items():
        if not isinstance(entry, dict):
            raise StudyError(path, f"{kind}.{name}", f"expected a table of keys, got {type(entry).__name__}")
    return tables


def _check_names(path: Path, variants: dict, comparisons: dict) -> None:
    """Every name a plain one of its own: nbkit's names and each other's are taken."""
    for kind, names, taken in (("variants", variants, VARIANTS), ("comparisons", comparisons, COMPARISONS)):
        for name in names:
            key = f"{kind}.{name}"
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise StudyError(path, key, "expected a name of letters, digits and . _ + - (it names run folders "
                                            "and report files), starting with a letter or digit")
            if name in taken:
                raise StudyError(path, key, f"'{name}' is one of nbkit's {kind}; give yours a name of its own")
            other = ("one of nbkit's comparisons" if name in COMPARISONS else "one of nbkit's variants"
                     if name in VARIANTS else "a variant of this file" if kind == "comparisons" and name in variants
                     else None)
            if other:  # `nbkit sweep NAME` takes comparisons and variants alike
                raise StudyError(path, key, f"'{name}' is already {other}; give it a name of its own")


def _variants(raw: dict, path: Path) -> dict[str, Variant]:
    """The file's variants, each resolved through its bases into the settings it trains with."""
    out: dict[str, Variant] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> Variant:
        if name in out:
            return out[name]
        if name in chain:
            raise StudyError(path, f"variants.{chain[0]}.base", f"circular bases: {' -> '.join([*chain, name])}")
        if len(chain) >= MAX_BASES:
            raise StudyError(path, f"variants.{chain[0]}.base", f"bases chained more than {MAX_BASES} deep; "
                                                                "expected a variant a few changes from nbkit's or a model")
        out[name] = _variant(name, raw[name], path, tuple(raw), lambda base: resolve(base, (*chain, name)))
        return out[name]

    for name in raw:
        resolve(name, ())
    return {name: out[name] for name in raw}  # the file's order


def _variant(name: str, entry: dict, path: Path, file_names: tuple[str, ...], file_variant) -> Variant:
    """One variant of the file; file_variant(name) resolves another of the file's (its base)."""
    key = f"variants.{name}"
    _check_keys(entry, (*VARIANT_KEYS, *KEYS), path, key,
                f"base, description, search or a setting ({', '.join(KEYS)})")
    base, own = entry.get("base"), {k: v for k, v in entry.items() if k not in VARIANT_KEYS}
    if base is None and "model" not in own:
        raise StudyError(path, key, "expected a base (a variant it changes) or a model (timm/<name>, "
                                    "package.module:callable or one of nbkit's), or both")
    options = {}
    if base is not None:
        if not isinstance(base, str) or (base not in VARIANTS and base not in file_names):
            raise StudyError(path, f"{key}.base", f"unknown variant {base!r}{closest(str(base), [*VARIANTS, *file_names])}")
        parent = VARIANTS[base] if base in VARIANTS else file_variant(base)
        options = parent.defined_options()  # settings alone: reading the file imports no model
    options.update(own)
    try:
        settings = Settings(**options)
    except SettingsError as e:
        raise StudyError(path, key, str(e)) from None
    options = {k: v for k, v in settings.to_dict().items() if k in options}  # typed as Settings reads them
    return Variant(name, _description(entry, base, own, path, key), options, base, str(path))


def _description(entry: dict, base: str | None, own: dict, path: Path, key: str) -> str:
    text = entry.get("description")
    if text is None:  # what it is, from what it changes
        changes = ", ".join(f"{k}={v}" for k, v in own.items() if k != "model")
        head = own.get("model") or base
        return f"{head} with {changes}" if changes else str(head)
    if not isinstance(text, str) or not text.strip() or "\n" in text.strip() or len(text) > 300:
        raise StudyError(path, f"{key}.description", "expected one line of text (at most 300 characters)")
    return text.strip()


def _comparison(name: str, entry: dict, variants: dict[str, Variant], path: Path) -> Comparison:
    key = f"comparisons.{name}"
    _check_keys(entry, COMPARISON_KEYS, path, key, ", ".join((*COMPARISON_KEYS, "search")))
    members = entry.get("variants")
    if not isinstance(members, list) or not members or not all(isinstance(v, str) for v in members):
        raise StudyError(path, f"{key}.variants", "expected a list of variant names (nbkit's or this file's)")
    for v in members:
        if v not in variants:
            raise StudyError(path, f"{key}.variants", f"unknown variant '{v}'{closest(v, variants)}")
        if members.count(v) > 1:
            raise StudyError(path, f"{key}.variants", f"'{v}' is listed twice")
    baseline = entry.get("baseline", members[0])
    if baseline not in members:
        raise StudyError(path, f"{key}.baseline", f"expected one of the comparison's variants "
                                                  f"({', '.join(members)}), got {baseline!r}{closest(str(baseline), members)}")
    texts = {}
    for k, required in (("question", True), ("expected", False)):
        v = entry.get(k, None if required else "")
        if not isinstance(v, str) or (required and not v.strip()):
            raise StudyError(path, f"{key}.{k}", "expected " + ("a question, as text" if required else "text"))
        texts[k] = " ".join(v.split())
    return Comparison(name, texts["question"], tuple(members), _not_the_original(path, texts["expected"]),
                      baseline=baseline, expected=texts["expected"], source=str(path))


def _not_the_original(path: Path, expected: str) -> str:
    """What stands where a built-in comparison has the original study's findings."""
    return (f"nothing: this comparison is not the original's; it comes from {path.name}."
            + (f" What you expected: {expected}" if expected else ""))


def check_models(study: Study, names: list[str] | None = None, num_classes: int = 10, size: int = 32) -> None:
    """Build each of the file's variants' models (those in names, or all) for num_classes and run
    it once on a batch of two size x size images: a model that cannot be imported or built, or
    whose output is not (batch, classes), is refused naming the file and the variant's key."""
    from nbkit.design.models import probe

    seen = set()
    for name in study.own_variants:
        s = study.variants[name].settings
        if (names is not None and name not in names) or (s.model, s.model_kwargs) in seen:
            continue
        seen.add((s.model, s.model_kwargs))
        try:
            probe(s, num_classes, size)
        except Exception as e:  # noqa: BLE001 - whatever the user's code raises, said in one line
            message = " ".join(str(e).split()) or type(e).__name__
            raise StudyError(study.source, f"variants.{name}.model",
                             message if isinstance(e, ValueError) else f"{type(e).__name__}: {message}") from None
