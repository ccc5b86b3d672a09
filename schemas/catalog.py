"""The software catalog file (data/catalog.yaml): products, how to recognise them, their aliases.

A product's match rules are regular expressions on the NORMALISED title (lower case, no
bitness, language, version or year; see tasks.recognition.normalize_title) and must match the
whole title; an optional publisher regex is searched in the normalised publisher, and a rule
with a publisher needs one; an optional version range (">=16,<17") is checked against the
version column. Rules are tried in file order: put specific rules before general ones.

`read_catalog(path)` validates the whole file and raises InputRejected naming the line, the
product and the field of every problem.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from licenseflow.errors import InputRejected, RowError
from schemas.store import CLASSIFICATIONS, METRICS

ALIAS_KINDS = ("entra_apps", "okta_apps", "flexlm_features", "graph_skus")
IGNORE = "IGNORE"  # reserved: an override that marks a title as not worth recognising
CODE_PATTERN = r"^[A-Z0-9][A-Z0-9-]*[A-Z0-9]$"

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster
_VERSION_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)\s*$")
_UPPER_OUTSIDE_ESCAPES = re.compile(r"[A-Z]")


def version_key(version: object) -> tuple[int, ...] | None:
    """'8.0.3810.9' -> (8, 0, 3810, 9); None when there is no number in it."""
    if version is None or version != version:  # None or NaN
        return None
    numbers = re.findall(r"\d+", str(version))
    return tuple(int(n) for n in numbers) if numbers else None


def _compare(left: tuple[int, ...], right: tuple[int, ...]) -> int:
    width = max(len(left), len(right))
    a, b = left + (0,) * (width - len(left)), right + (0,) * (width - len(right))
    return (a > b) - (a < b)


_OPS = {
    ">=": lambda c: c >= 0,
    "<=": lambda c: c <= 0,
    ">": lambda c: c > 0,
    "<": lambda c: c < 0,
    "==": lambda c: c == 0,
    "!=": lambda c: c != 0,
}


@dataclass(frozen=True)
class VersionRange:
    """Comma-separated clauses that must all hold, e.g. '>=8.0.2110' or '>=16,<17'."""

    clauses: tuple[tuple[str, tuple[int, ...]], ...]

    @classmethod
    def parse(cls, spec: str) -> VersionRange:
        clauses = []
        for part in spec.split(","):
            found = _VERSION_CLAUSE.match(part)
            if not found:
                raise ValueError(
                    f"version clause {part.strip()!r} is not like '>=16' or '<17.0.2' "
                    "(operators >=, <=, >, <, ==, !=; clauses separated by commas)"
                )
            clauses.append((found[1], tuple(int(n) for n in found[2].split("."))))
        return cls(tuple(clauses))

    def contains(self, version: object) -> bool:
        key = version_key(version)
        if key is None:
            return False
        return all(_OPS[op](_compare(key, bound)) for op, bound in self.clauses)


def _check_pattern(pattern: str) -> str:
    if "(?P<" in pattern:
        raise ValueError("named groups (?P<...>) are not allowed; use (...) or (?:...)")
    if re.search(r"\(\?[aiLmsux]+\)", pattern):
        raise ValueError("inline flags like (?i) are not allowed: titles are already lower case")
    if _UPPER_OUTSIDE_ESCAPES.search(re.sub(r"\\.", "", pattern)):
        raise ValueError(
            "has upper-case letters, but titles and publishers are normalised to lower case, "
            "so it could never match; write it in lower case"
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


class MatchRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="regex, must match the whole normalised title")
    publisher: str | None = Field(None, description="regex searched in the normalised publisher")
    versions: str | None = Field(None, description="version range, e.g. '>=16,<17'")

    _version_range: VersionRange | None = PrivateAttr(None)

    @field_validator("name", "publisher")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return None if value is None else _check_pattern(value)

    @field_validator("versions")
    @classmethod
    def _valid_range(cls, value: str | None) -> str | None:
        if value is not None:
            VersionRange.parse(value)
        return value

    def model_post_init(self, _context) -> None:
        self._version_range = VersionRange.parse(self.versions) if self.versions else None

    @property
    def version_range(self) -> VersionRange | None:
        return self._version_range


class Product(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=CODE_PATTERN, max_length=100)
    name: str = Field(min_length=1, max_length=300)
    vendor: str = Field(min_length=1, max_length=200)
    metric: Literal[METRICS]  # type: ignore[valid-type]
    classification: Literal[CLASSIFICATIONS]  # type: ignore[valid-type]
    match: list[MatchRule] = Field(default_factory=list)
    entra_apps: list[str] = Field(default_factory=list, description="appDisplayName or appId")
    okta_apps: list[str] = Field(default_factory=list, description="Okta app labels")
    flexlm_features: list[str] = Field(default_factory=list)
    flexlm_daemon: str | None = Field(None, description="FlexLM vendor daemon, e.g. MLM")
    graph_skus: list[str] = Field(default_factory=list, description="Graph skuPartNumber")
    usage_threshold: float | None = Field(None, ge=0, le=1)
    inactivity_days: int | None = Field(None, ge=1)
    notes: str | None = None

    @field_validator("code")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == IGNORE:
            raise ValueError(f"{IGNORE} is reserved for overrides that ignore a title")
        return value

    @model_validator(mode="after")
    def _free_titles_are_per_device(self) -> Product:
        if self.classification != "commercial" and self.metric != "per_device":
            raise ValueError(
                f"a {self.classification} product uses metric per_device (got {self.metric})"
            )
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    products: list[Product]
    ignore: list[str] = Field(
        default_factory=list,
        description="regexes on the normalised title of things that are not software to "
        "license (updates, language packs, drivers); tried only when no product rule matched",
    )

    _cache: dict = PrivateAttr(default_factory=dict)  # compiled matchers, built on first use

    @field_validator("ignore")
    @classmethod
    def _valid_ignore(cls, value: list[str]) -> list[str]:
        return [_check_pattern(p) for p in value]

    def by_code(self) -> dict[str, Product]:
        return {p.code: p for p in self.products}

    def codes(self) -> set[str]:
        return {p.code for p in self.products}


def _cross_problems(catalog: Catalog) -> list[tuple[int, str, object, str]]:
    """What no single entry can see: duplicate codes, an alias claimed by two products."""
    problems = []
    first_code: dict[str, int] = {}
    for i, product in enumerate(catalog.products):
        if product.code in first_code:
            other = catalog.products[first_code[product.code]]
            problems.append(
                (i, "code", product.code, f"duplicate code; also used by entry '{other.name}'")
            )
        first_code.setdefault(product.code, i)
    for kind in ALIAS_KINDS:
        owner: dict[str, int] = {}
        for i, product in enumerate(catalog.products):
            for alias in getattr(product, kind):
                key = alias.strip().casefold()
                if key in owner and catalog.products[owner[key]].code != product.code:
                    other = catalog.products[owner[key]].code
                    reason = f"alias already belongs to product {other}; an alias names one product"
                    problems.append((i, kind, alias, reason))
                owner.setdefault(key, i)
    return problems


def _entry_lines(text: str) -> dict[int, int]:
    """1-based line where each entry of `products:` starts (for error messages)."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        return {}
    if not isinstance(root, yaml.MappingNode):
        return {}
    for key, value in root.value:
        if key.value == "products" and isinstance(value, yaml.SequenceNode):
            return {i: item.start_mark.line + 1 for i, item in enumerate(value.value)}
    return {}


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _dig(data: object, loc: tuple) -> object:
    for part in loc:
        try:
            data = data[part]  # type: ignore[index]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def parse_catalog(text: str, file: str = "catalog.yaml") -> Catalog:
    """Validate catalog YAML text; every problem names the entry (line, code) and the field."""
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        error = RowError(file, line, None, None, f"not valid YAML: {exc}")
        raise InputRejected(file, [error]) from None
    if not isinstance(data, dict) or "products" not in data:
        reason = "expected a mapping with a 'products:' list at the top"
        raise InputRejected(file, [RowError(file, None, None, None, reason)])
    raw_products = data.get("products") if isinstance(data.get("products"), list) else []

    def where(index: int) -> tuple[int | None, str]:
        entry = raw_products[index] if index < len(raw_products) else None
        code = entry.get("code") if isinstance(entry, dict) else None
        line = _entry_lines(text).get(index)  # only on errors: composing costs time
        return line, f"product {code or '#' + str(index + 1)} (entry {index + 1})"

    errors: list[RowError] = []
    try:
        catalog = Catalog.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if len(loc) >= 2 and loc[0] == "products" and isinstance(loc[1], int):
                line, entry = where(loc[1])
                column = _field_path(loc[2:]) or None
                value = _dig(raw_products, loc[1:]) if column else None
                errors.append(RowError(file, line, column, value, f"{entry}: {message}"))
            else:
                errors.append(RowError(file, None, _field_path(loc), err.get("input"), message))
        summary = f"{file}: {len(errors)} problem(s) in the catalog"
        raise InputRejected(file, errors, summary) from None
    for index, column, value, reason in _cross_problems(catalog):
        line, entry = where(index)
        errors.append(RowError(file, line, column, value, f"{entry}: {reason}"))
    if errors:
        raise InputRejected(file, errors, f"{file}: {len(errors)} problem(s) in the catalog")
    return catalog


def read_catalog(path: Path) -> Catalog:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputRejected(
            str(path), [RowError(str(path), None, None, None, f"cannot read the catalog: {exc}")]
        ) from None
    return parse_catalog(text, str(path))


def alias_owners(catalog: Catalog, kind: str) -> dict[str, str]:
    """{casefolded alias: product code} for one alias kind (see ALIAS_KINDS)."""
    if kind not in ALIAS_KINDS:
        raise ValueError(f"unknown alias kind {kind!r}; one of {', '.join(ALIAS_KINDS)}")
    owners: dict[str, str] = {}
    for product in catalog.products:
        for alias in getattr(product, kind):
            owners[alias.strip().casefold()] = product.code
            if kind == "flexlm_features" and product.flexlm_daemon:
                owners[f"{product.flexlm_daemon}:{alias}".strip().casefold()] = product.code
    return owners


def counts_by(catalog: Catalog, field: str) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for product in catalog.products:
        counts[getattr(product, field)] += 1
    return dict(sorted(counts.items()))
