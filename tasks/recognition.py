"""Stage 3, map installs to licenses: recognise discovered titles as catalog products.

A raw title ("Microsoft Office Professional Plus 2016 - en-us", "7-Zip 22.01 (x64)") is first
normalised (case, trademark signs, bitness, language, edition spellings, versions and years
removed), then matched, in this order:
  1. an analyst's override (`slm catalog confirm`), kept in the overrides YAML;
  2. the catalog's rules (data/catalog.yaml), first matching rule in file order;
  3. the catalog's ignore list (updates, language packs, drivers): no product, kind "ignored".
Titles that match nothing get fuzzy suggestions for an analyst to confirm.

Recognition works on the unique (title, publisher, version) combinations and maps the result
back, so 2M install rows with 20k distinct titles cost 20k matches, not 2M.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from rapidfuzz import fuzz, process
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from licenseflow.errors import InputRejected, LicenseflowError, RowError
from licenseflow.settings import get_settings
from schemas.catalog import (
    ALIAS_KINDS,
    IGNORE,
    Catalog,
    MatchRule,
    alias_owners,
    read_catalog,
)
from schemas.store import Installation, Product, Vendor
from tasks.audit import Change, record, record_many
from tasks.feeds import lock_feed

MATCH_OVERRIDE, MATCH_RULE, MATCH_IGNORED = "override", "rule", "ignored"
CATALOG_ACTOR = "catalog"

# --- normalisation --------------------------------------------------------------------------

_TRADEMARKS = re.compile(r"[\u2122\u00ae\u00a9\u2120]|\((?:r|tm|c)\)", re.IGNORECASE)
_BITNESS = re.compile(
    r"(?<![\w.])(?:x64|x86|x86[_-]64|amd64|arm64|aarch64|win64|win32|ia32|i[36]86"
    r"|(?:32|64)[ -]?bits?)(?![\w-])"
)
_LANG_CODES = (
    "ar|bg|ca|cs|da|de|el|en|es|et|eu|fi|fr|ga|gl|he|hi|hr|hu|id|it|ja|kk|ko|lt|lv|ms|nb|nl|"
    "nn|no|pl|pt|ro|ru|sk|sl|sr|sv|th|tr|uk|vi|zh"
)
_LOCALE = rf"(?:{_LANG_CODES})(?:-[a-z]{{2,4}}){{1,2}}"
_LANG_NAMES = (
    r"english|deutsch|german|francais|french|espanol|spanish|italiano|italian|japanese|"
    r"nederlands|dutch|portugues|portuguese|brasil|polski|polish|svenska|swedish|dansk|danish|"
    r"norsk|norwegian|suomi|finnish|russian|chinese(?: simplified| traditional)?|korean|"
    r"cestina|czech|magyar|hungarian|turkce|turkish|multilingual|international|"
    r"english \((?:united states|us|uk)\)|enu|deu|fra|jpn|esn|ita|chs|cht|kor|ptb|rus|nld|"
    r"日本語|简体中文|繁體中文|中文|한국어|русскии"
)
_LANGUAGE = rf"(?:{_LOCALE}|{_LANG_NAMES})"
_LANGUAGE_WHOLE = re.compile(_LANGUAGE)
_LOCALE_WHOLE = re.compile(_LOCALE)
_DASHES = (" - ", " \u2013 ", " \u2014 ")
_PARENS = re.compile(r"[(\[]([^()\[\]]*)[)\]]")
_SCOPE = r"current user|all users|per-user|per-machine|machine-wide|user|machine|system"
_BITS = r"x64|x86|amd64|arm64|win64|win32|(?:32|64)[ -]?bits?"
_PAREN_NOISE = re.compile(
    rf"(?:{_LANGUAGE}|(?:{_LANG_CODES})(?![\w-])|{_SCOPE}|{_BITS}|\s|[,;/+&-])+"
)
_VERSIONS = re.compile(
    "|".join(
        [
            r"(?<![\w.])(?:version|ver\.?|v)\s?\d+(?:\.\d+)*[a-z]?(?![\w.])",
            r"(?<![\w])(?:sp|service pack|update|build|release|rev|patch|hotfix)\s?\d+(?:\.\d+)*"
            r"[a-z]?(?![\w])",
            r"(?<![\w])\d+(?:\.\d+)+(?:[-+_~][0-9a-z]+(?:\.[0-9a-z]+)*)?(?![\w])",
            r"(?<![\w])r?(?:19[89]\d|20\d\d)[ab]?(?![\w])",  # years, MATLAB R2023a
        ]
    )
)
_HAS_DIGIT = re.compile(r"\d")
_BITNESS_HINTS = ("64", "86", "32", "bit")
# (cheap substring test, pattern, replacement): the test skips the regex for most titles
_EDITIONS = [
    ("pro", re.compile(r"(?<![\w-])(?:pro\s*plus|proplus|pro\+)(?![\w-])"), "professional plus"),
    ("std", re.compile(r"(?<![\w-])std(?![\w-])"), "standard"),
    ("ce", re.compile(r"(?<![\w-])(?:ce|community edition)(?![\w-])"), "community"),
    ("&", re.compile(r"\s&\s|&"), "and"),
    ("edition", re.compile(r"(?<![\w-])edition(?![\w-])"), ""),
]
_PUNCT = "-\u2013\u2014:,;/|~_."
_SPACES = re.compile(r"\s+")


def _strip_marks(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _clean_parens(match: re.Match) -> str:
    inner = match[1].strip()
    if not inner or _PAREN_NOISE.fullmatch(inner):
        return " "
    return f"({inner})"


def _normalize_once(text: str) -> str:
    # Each step is guarded by a cheap substring test: most titles need only a few of them.
    if "(" in text or not text.isascii():
        text = _TRADEMARKS.sub(" ", text)
    if text.isascii():
        text = text.lower()
    else:
        text = unicodedata.normalize("NFKC", _strip_marks(text)).casefold()
    text = text.strip()
    if text.endswith(".app"):
        text = text[:-4]
    text = text.replace(",", " ").replace("_", " ")
    if _HAS_DIGIT.search(text):
        text = _VERSIONS.sub(" ", text)
    if any(hint in text for hint in _BITNESS_HINTS):
        text = _BITNESS.sub(" ", text)
    if "(" in text or "[" in text:
        text = _PARENS.sub(_clean_parens, text)
    text = _drop_language_suffix(text)
    for hint, pattern, replacement in _EDITIONS:
        if hint in text:
            text = pattern.sub(f" {replacement} ", text)
    # tokens made only of punctuation ("-" left between removed parts) go
    return " ".join(t for t in text.split() if t.strip(_PUNCT)).strip(_PUNCT + " ")


def _drop_language_suffix(text: str) -> str:
    """'foo - en-us' / 'foo - deutsch' / 'foo en-us' -> 'foo'."""
    for dash in _DASHES:
        head, found, tail = text.rpartition(dash)
        if found and _LANGUAGE_WHOLE.fullmatch(tail.strip()):
            return head
    head, _, last = text.rstrip().rpartition(" ")
    if head and "-" in last and _LOCALE_WHOLE.fullmatch(last):
        return head
    return text


def normalize_title(title: object) -> str:
    """Lower-case title without trademark signs, bitness, language, version, year or edition
    spelling variants, so that equivalent titles compare equal. Idempotent; '' for missing."""
    if title is None or title is pd.NA or (isinstance(title, float) and title != title):
        return ""
    text = str(title)
    for _ in range(4):  # removing one part can expose another ("foo - en-us 2016")
        cleaned = _normalize_once(text)
        if cleaned == text:
            break
        text = cleaned
    return text


_PUBLISHER_EMAIL = re.compile(r"<[^>]*>|\([^)]*@[^)]*\)")
_COMPANY_SUFFIX = re.compile(
    r"(?:[\s,]+(?:inc|incorporated|corp|corporation|co|company|ltd|limited|llc|l\.l\.c|gmbh|"
    r"ag|sa|s\.a|sarl|s\.a\.r\.l|bv|b\.v|nv|n\.v|plc|pty|srl|s\.r\.l|s\.r\.o|spa|s\.p\.a|oy|ab|"
    r"as|a/s|kg|kk|k\.k|se|& co|and co)\.?)+$"
)


def normalize_publisher(publisher: object) -> str:
    """Lower-case publisher without e-mail addresses, trademark signs and company suffixes
    ('Adobe Systems Incorporated' -> 'adobe systems'); '' for missing."""
    if publisher is None or publisher is pd.NA:
        return ""
    if isinstance(publisher, float) and publisher != publisher:
        return ""
    text = _TRADEMARKS.sub(" ", str(publisher))
    text = _PUBLISHER_EMAIL.sub(" ", text)
    text = unicodedata.normalize("NFKC", _strip_marks(text)).casefold()
    text = _SPACES.sub(" ", text).strip(" ,.")
    text = _COMPANY_SUFFIX.sub("", text)
    return _SPACES.sub(" ", text).strip(" ,.")


# --- catalog ---------------------------------------------------------------------------------


def load_catalog(path: Path | str | None = None) -> Catalog:
    """The validated catalog; a bad entry raises InputRejected naming its line, code and field."""
    return read_catalog(Path(path) if path else get_settings().path("catalog_file"))


@dataclass(frozen=True)
class _Rule:
    code: str
    name: re.Pattern
    publisher: re.Pattern | None
    rule: MatchRule

    def accepts(self, publisher: str, version: object) -> bool:
        if self.publisher is not None and not (publisher and self.publisher.search(publisher)):
            return False
        return self.rule.version_range is None or self.rule.version_range.contains(version)


def _first_chars(pattern: str) -> frozenset[str] | None:
    """The characters a match of `pattern` can start with, or None when that is not known
    (any character, an empty match, a construct not analysed). Used only to pick which rules
    to try for a title, so "unknown" is always safe."""
    try:
        from re import _parser  # the stdlib's own regex parser (Python 3.11+)

        first, nullable = _first_of_sequence(_parser.parse(pattern), _parser)
    except Exception:
        return None
    return None if first is None or nullable else frozenset(first)


def _first_of_sequence(items, p) -> tuple[set[str] | None, bool]:
    out: set[str] = set()
    for op, av in items:
        first, nullable = _first_of_item(op, av, p)
        if first is None:
            return None, True
        out |= first
        if not nullable:
            return out, False
    return out, True


def _first_of_item(op, av, p) -> tuple[set[str] | None, bool]:
    if op is p.LITERAL:
        return {chr(av)}, False
    if op is p.AT:
        return set(), True
    if op is p.SUBPATTERN:
        return _first_of_sequence(av[-1], p)
    if op is p.BRANCH:
        out, any_nullable = set(), False
        for branch in av[1]:
            first, nullable = _first_of_sequence(branch, p)
            if first is None:
                return None, True
            out |= first
            any_nullable |= nullable
        return out, any_nullable
    if op in (p.MAX_REPEAT, p.MIN_REPEAT, getattr(p, "POSSESSIVE_REPEAT", None)):
        first, nullable = _first_of_sequence(av[2], p)
        return first, nullable or av[0] == 0
    if op is p.IN:
        out = set()
        for kind, value in av:
            if kind is p.LITERAL:
                out.add(chr(value))
            elif kind is p.RANGE and value[1] - value[0] < 256:
                out.update(chr(c) for c in range(value[0], value[1] + 1))
            else:
                return None, True
        return out, False
    return None, True


class _Matcher:
    """Every rule compiled once. Rules are grouped by the first character they can match, and
    each group is also compiled as one alternation, so a title is tried in C against only the
    rules that can start like it; a rule whose publisher or version refuses falls back to the
    group's later rules one by one."""

    def __init__(self, catalog: Catalog):
        self.rules = [
            _Rule(
                product.code,
                re.compile(rule.name),
                re.compile(rule.publisher) if rule.publisher else None,
                rule,
            )
            for product in catalog.products
            for rule in product.match
        ]
        self._first_chars = [_first_chars(r.name.pattern) for r in self.rules]
        self._groups: dict[str, tuple[list[_Rule], re.Pattern | None]] = {}
        self.ignore = (
            re.compile("|".join(f"(?:{p})" for p in catalog.ignore)) if catalog.ignore else None
        )

    def _group(self, char: str) -> tuple[list[_Rule], re.Pattern | None]:
        group = self._groups.get(char)
        if group is None:
            rules = [
                r
                for r, f in zip(self.rules, self._first_chars, strict=True)
                if f is None or char in f
            ]
            alternation = "|".join(f"(?P<r{i}>{r.name.pattern})" for i, r in enumerate(rules))
            group = self._groups[char] = (rules, re.compile(alternation) if rules else None)
        return group

    def _first_match(self, title: str) -> tuple[list[_Rule], int] | None:
        """The title's rule group and the index of the first rule whose name matches."""
        if not title:
            return None
        rules, any_rule = self._group(title[0])
        found = any_rule.fullmatch(title) if any_rule is not None else None
        return None if found is None else (rules, int(found.lastgroup[1:]))

    def depends_on_more_than_title(self, title: str) -> bool:
        """Whether the first rule whose name matches also checks publisher or version."""
        first = self._first_match(title)
        if first is None:
            return False
        rule = first[0][first[1]]
        return rule.publisher is not None or rule.rule.version_range is not None

    def match(self, title: str, publisher: str, version: object) -> str | None:
        first = self._first_match(title)
        if first is None:
            return None
        rules, start = first
        for index in range(start, len(rules)):
            rule = rules[index]
            if (index == start or rule.name.fullmatch(title)) and rule.accepts(publisher, version):
                return rule.code
        return None

    def ignored(self, title: str) -> bool:
        return bool(title) and self.ignore is not None and self.ignore.fullmatch(title) is not None


def _matcher(catalog: Catalog) -> _Matcher:
    cached = catalog._cache.get("matcher")
    if cached is None:
        cached = catalog._cache["matcher"] = _Matcher(catalog)
    return cached


# --- overrides -------------------------------------------------------------------------------

OverrideKey = tuple[str, str | None]  # (normalised title, normalised publisher or None)


def _overrides_path(path: Path | str | None) -> Path:
    return Path(path) if path else get_settings().path("overrides_file")


def _read_override_entries(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except yaml.YAMLError as exc:
        raise InputRejected(
            str(path), [RowError(str(path), None, None, None, f"not valid YAML: {exc}")]
        ) from None
    entries = data.get("overrides") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputRejected(
            str(path),
            [RowError(str(path), None, "overrides", None, "expected an 'overrides:' list")],
        )
    errors = []
    for i, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not entry.get("title") or not entry.get("product_code"):
            errors.append(
                RowError(str(path), i, None, entry, "each override needs title and product_code")
            )
    if errors:
        raise InputRejected(str(path), errors)
    return entries


def load_overrides(path: Path | str | None = None) -> dict[OverrideKey, str]:
    """{(normalised title, normalised publisher or None): product code or IGNORE}."""
    entries = _read_override_entries(_overrides_path(path))
    out: dict[OverrideKey, str] = {}
    for entry in entries:
        publisher = normalize_publisher(entry.get("publisher")) or None
        out[(normalize_title(entry["title"]), publisher)] = str(entry["product_code"])
    return out


def confirm_override(
    normalized_or_raw_title: str,
    product_code: str,
    path: Path | str | None = None,
    publisher: str | None = None,
    actor: str | None = None,
    *,
    catalog: Catalog | None = None,
    known_codes: Iterable[str] | None = None,
) -> dict:
    """Record that a title is `product_code` (or IGNORE: not worth recognising). Overrides win
    over catalog rules. The code must be in the catalog (or in `known_codes`, e.g. products
    that contracts created in the store). Returns the written entry."""
    title = _confirmable_title(normalized_or_raw_title)
    code = check_product_code(
        product_code, set(known_codes or ()) | (catalog or load_catalog()).codes()
    )
    target = _overrides_path(path)
    entries = _read_override_entries(target)
    norm_publisher = normalize_publisher(publisher) or None
    entry = {
        "title": title,
        "publisher": norm_publisher,
        "product_code": code,
        "confirmed_by": actor or _whoami(),
        "confirmed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    kept = [
        e
        for e in entries
        if (normalize_title(e["title"]), normalize_publisher(e.get("publisher")) or None)
        != (title, norm_publisher)
    ]
    _write_yaml_atomically(target, {"overrides": kept + [entry]})
    return entry


def _confirmable_title(raw: str) -> str:
    title = normalize_title(raw)
    if not title:
        raise LicenseflowError(f"title {raw!r} is empty once normalised; nothing to confirm")
    return title


def check_product_code(product_code: str, known: set[str]) -> str:
    """The upper-cased code if it is known (or IGNORE); else an error naming close codes."""
    code = product_code.strip().upper()
    if code == IGNORE or code in known:
        return code
    close = process.extract(code, sorted(known), scorer=fuzz.WRatio, limit=3)
    hint = ", ".join(c for c, _, _ in close)
    raise LicenseflowError(
        f"unknown product code {code!r}: not in the catalog or the store (closest: {hint}); "
        f"use {IGNORE} to mark a title as not worth recognising"
    )


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "analyst"


_OVERRIDES_HEADER = (
    "# Analyst-confirmed recognitions, written by `slm catalog confirm`. They win over the\n"
    "# catalog's rules. product_code IGNORE marks a title as not worth recognising.\n"
)


def _write_yaml_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(_OVERRIDES_HEADER + body)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- recognition -----------------------------------------------------------------------------


def _codes(values: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    return codes.astype(np.int64), pd.Index(uniques)


def _combine(a: np.ndarray, b: np.ndarray, b_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Factorise the pair (a, b) of integer codes (-1 = missing) into one code per pair."""
    key = (a + 1) * (b_size + 1) + (b + 1)
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64), np.asarray(uniques)


def recognize(
    installs: pd.DataFrame,
    catalog: Catalog,
    overrides: dict[OverrideKey, str] | None = None,
) -> pd.DataFrame:
    """Add normalized_title, product_code (null when unmatched) and match_kind ("override",
    "rule", "ignored" or null) to a frame with raw_title, publisher and version columns.

    Set-based: each unique raw title is normalised and matched once. Only the rows of titles
    whose first matching rule (or an override) names a publisher or a version range are
    matched again, once per unique (title, publisher, version). The results reach the rows
    through one integer take."""
    matcher = _matcher(catalog)
    overrides = overrides or {}
    by_publisher = {title for title, publisher in overrides if publisher is not None}
    t_codes, t_uniques = _codes(installs["raw_title"])
    titles = [normalize_title(t) for t in t_uniques] + [""]  # the last one: missing titles
    products, kinds, dependent = [], [], np.zeros(len(titles), dtype=bool)
    for i, title in enumerate(titles):
        dependent[i] = title in by_publisher or matcher.depends_on_more_than_title(title)
        product, kind = _match_one(matcher, overrides, title, "", None)
        products.append(product)
        kinds.append(kind)
    rows = np.where(t_codes < 0, len(titles) - 1, t_codes)  # row -> entry of the tables

    picked = np.flatnonzero(dependent[rows])
    if len(picked):
        # these rows need their publisher and version: one match per unique combination
        p_codes, p_uniques = _codes(installs["publisher"].iloc[picked])
        v_codes, v_uniques = _codes(installs["version"].iloc[picked])
        publishers = [normalize_publisher(p) for p in p_uniques] + [""]
        versions = list(v_uniques) + [None]
        tp_codes, tp_keys = _combine(rows[picked], p_codes, len(p_uniques))
        combo_codes, combo_keys = _combine(tp_codes, v_codes, len(v_uniques))
        tp_of_combo = combo_keys // (len(v_uniques) + 1) - 1
        v_of_combo = combo_keys % (len(v_uniques) + 1) - 1
        t_of_tp = tp_keys // (len(p_uniques) + 1) - 1
        p_of_tp = tp_keys % (len(p_uniques) + 1) - 1
        first_combo = len(titles)
        for tp, v in zip(tp_of_combo.tolist(), v_of_combo.tolist(), strict=True):
            title = titles[t_of_tp[tp]]
            product, kind = _match_one(
                matcher, overrides, title, publishers[p_of_tp[tp]], versions[v]
            )
            titles.append(title)
            products.append(product)
            kinds.append(kind)
        rows = rows.copy()
        rows[picked] = first_combo + combo_codes

    def column(values: list) -> pd.Series:
        return pd.Series(pd.array(values, dtype="str").take(rows), index=installs.index)

    return installs.assign(
        normalized_title=column(titles), product_code=column(products), match_kind=column(kinds)
    )


def _match_one(
    matcher: _Matcher,
    overrides: dict[OverrideKey, str],
    title: str,
    publisher: str,
    version: object,
) -> tuple[str | None, str | None]:
    if overrides:
        code = overrides.get((title, publisher or None)) or overrides.get((title, None))
        if code is not None:
            return (None, MATCH_IGNORED) if code == IGNORE else (code, MATCH_OVERRIDE)
    code = matcher.match(title, publisher, version)
    if code is not None:
        return code, MATCH_RULE
    if matcher.ignored(title):
        return None, MATCH_IGNORED
    return None, None


# --- suggestions -----------------------------------------------------------------------------

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


def _choices(catalog: Catalog) -> tuple[list[str], list[str]]:
    cached = catalog._cache.get("choices")
    if cached is None:
        strings, codes = [], []
        for product in catalog.products:
            names = {product.name, f"{product.vendor} {product.name}"}
            names |= {a for a in product.entra_apps + product.okta_apps if not _GUID.match(a)}
            for name in sorted(names):
                norm = normalize_title(name)
                if norm:
                    strings.append(norm)
                    codes.append(product.code)
        cached = catalog._cache["choices"] = (strings, codes)
    return cached


def _scores(titles: list[str], choices: list[str]) -> np.ndarray:
    """0-100 similarity of every title to every choice: the mean of token_set_ratio (words in
    any order, extra words forgiven) and token_sort_ratio (extra words cost), so a title that
    only shares one word ("... client") with a product does not score high."""
    by_set = process.cdist(titles, choices, scorer=fuzz.token_set_ratio, workers=-1)
    by_sort = process.cdist(titles, choices, scorer=fuzz.token_sort_ratio, workers=-1)
    return (by_set + by_sort) / 2


def suggest(
    titles: Iterable[str], catalog: Catalog, limit: int = 3, score_cutoff: float = 60
) -> pd.DataFrame:
    """Up to `limit` candidate products per title (best first), scored 0-100 by RapidFuzz
    against product names and SaaS aliases. Titles are normalised first."""
    columns = ["normalized_title", "product_code", "product_name", "score"]
    norm = [t for t in dict.fromkeys(normalize_title(t) for t in titles) if t]
    strings, codes = _choices(catalog)
    found = []
    for start in range(0, len(norm), 2000):  # bounds the score matrix's memory
        chunk = norm[start : start + 2000]
        scores = _scores(chunk, strings)
        rows, cols = np.nonzero(scores >= score_cutoff)
        found.append(
            pd.DataFrame(
                {
                    "title_index": rows + start,
                    "normalized_title": np.asarray(chunk, dtype=object)[rows],
                    "product_code": np.asarray(codes, dtype=object)[cols],
                    "score": scores[rows, cols].astype(float).round(1),
                }
            )
        )
    if not found or not sum(len(f) for f in found):
        return pd.DataFrame(columns=columns)
    names = {p.code: p.name for p in catalog.products}
    best = (
        pd.concat(found)
        .sort_values(["title_index", "score", "product_code"], ascending=[True, False, True])
        .drop_duplicates(["title_index", "product_code"])
        .groupby("title_index", sort=True)
        .head(limit)
    )
    best = best.assign(product_name=best["product_code"].map(names))
    return best[columns].reset_index(drop=True)


# --- aliases for the usage feeds --------------------------------------------------------------


class AliasMap(dict):
    """{alias: product code} with case-insensitive lookups (keys are stored casefolded)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(str(key).strip().casefold())

    def get(self, key, default=None):
        return super().get(str(key).strip().casefold(), default)

    def __contains__(self, key) -> bool:
        return super().__contains__(str(key).strip().casefold())


def alias_map(catalog: Catalog, kind: str) -> AliasMap:
    """Alias -> product code for one feed: kind is entra_apps (appDisplayName or appId),
    okta_apps (app label), flexlm_features (feature, also 'DAEMON:feature') or graph_skus
    (skuPartNumber). Lookups are case-insensitive; keys are stored casefolded, so
    `series.str.strip().str.casefold().map(m)` works on a whole column."""
    return AliasMap(alias_owners(catalog, kind))


def product_lookup(catalog: Catalog) -> dict[str, AliasMap]:
    """Every alias map at once: {kind: alias_map(catalog, kind)}."""
    return {kind: alias_map(catalog, kind) for kind in ALIAS_KINDS}


# --- the store -------------------------------------------------------------------------------

_SYNCED_FIELDS = ("name", "vendor_id", "classification", "usage_threshold", "inactivity_days")


def sync_catalog_to_store(session: Session, catalog: Catalog) -> int:
    """Upsert the catalog's vendors and products; returns how many products were created or
    changed. Idempotent. A product's metric is set only when the catalog creates it: once a
    product exists, contracts own its metric. usage_threshold and inactivity_days are only
    written when the catalog gives them. Every change is audit-logged (actor "catalog")."""
    lock_feed(session, "catalog")  # a second worker syncing at once waits, then sees ours
    changes: list[Change] = []
    vendor_ids = dict(session.execute(select(Vendor.name, Vendor.id)).tuples().all())
    new_vendors = sorted({p.vendor for p in catalog.products} - set(vendor_ids))
    if new_vendors:
        session.execute(insert(Vendor), [{"name": name} for name in new_vendors])
        vendor_ids = dict(session.execute(select(Vendor.name, Vendor.id)).tuples().all())
        changes += [Change("create", "vendor", n, None, {"name": n}) for n in new_vendors]

    existing = {
        row.code: row
        for row in session.execute(
            select(Product.id, Product.code, Product.metric, *_synced_columns())
        ).all()
    }
    inserts, updates, product_changes = [], [], 0
    for item in catalog.products:
        wanted = {
            "name": item.name,
            "vendor_id": vendor_ids[item.vendor],
            "classification": item.classification,
            "usage_threshold": item.usage_threshold,
            "inactivity_days": item.inactivity_days,
        }
        row = existing.get(item.code)
        if row is None:
            inserts.append({"code": item.code, "metric": item.metric, **wanted})
            after = {"code": item.code, "metric": item.metric, "vendor": item.vendor, **wanted}
            changes.append(Change("create", "product", item.code, None, after))
            continue
        before_all = {f: getattr(row, f) for f in _SYNCED_FIELDS}
        diff = {
            f: v
            for f, v in wanted.items()
            if before_all[f] != v
            and not (v is None and f in ("usage_threshold", "inactivity_days"))
        }
        if diff:
            updates.append({"id": row.id, **before_all, **diff})
            before = {f: before_all[f] for f in diff}
            changes.append(Change("update", "product", item.code, before, diff))
    if inserts:
        session.execute(insert(Product), inserts)
    if updates:
        session.execute(update(Product), updates)
    product_changes = len(inserts) + len(updates)
    if changes:
        record_many(session, CATALOG_ACTOR, changes)
    return product_changes


def _synced_columns():
    return [getattr(Product, f) for f in _SYNCED_FIELDS]


def apply_override_to_store(
    session: Session,
    title: str,
    product_code: str,
    publisher: str | None = None,
    actor: str | None = None,
) -> int:
    """Re-point the open installation rows of a (normalised) title, optionally only those of
    one publisher, to the confirmed product (IGNORE: to no product). Returns rows changed;
    one audit entry describes the change."""
    title = _confirmable_title(title)
    code = product_code.strip().upper()
    product_id = None
    if code != IGNORE:
        product_id = session.execute(
            select(Product.id).where(Product.code == code)
        ).scalar_one_or_none()
        if product_id is None:
            raise LicenseflowError(
                f"product {code} is not in the store yet; run `slm catalog sync` first"
            )
    where = [Installation.normalized_title == title, Installation.removed_at.is_(None)]
    wanted_publisher = normalize_publisher(publisher) or None
    if wanted_publisher:
        raw = session.execute(select(Installation.publisher).where(*where).distinct()).scalars()
        matching = [p for p in raw if normalize_publisher(p) == wanted_publisher]
        where.append(Installation.publisher.in_(matching))
    before = session.execute(
        select(Installation.product_id, func.count())
        .where(*where, Installation.product_id.is_distinct_from(product_id))
        .group_by(Installation.product_id)
    ).all()
    changed = session.execute(
        update(Installation)
        .where(*where, Installation.product_id.is_distinct_from(product_id))
        .values(product_id=product_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    record(
        session,
        actor or _whoami(),
        "recognition_override",
        "installation",
        title,
        before={"rows_by_product_id": {str(pid): n for pid, n in before}},
        after={
            "product_code": code,
            "product_id": product_id,
            "publisher": wanted_publisher,
            "rows": changed,
        },
    )
    return changed


def unmatched_titles(
    session: Session,
    limit: int = 50,
    catalog: Catalog | None = None,
    overrides: dict[OverrideKey, str] | None = None,
) -> pd.DataFrame:
    """Open installations with no product, grouped by normalised title, most devices first,
    with up to three suggestions each. Titles the catalog or an override ignores are left
    out. Columns: normalized_title, example_title, publisher, devices, installs,
    suggested_code, score, suggestions."""
    catalog = catalog or load_catalog()
    overrides = load_overrides() if overrides is None else overrides
    ignored = sorted({t for (t, _), code in overrides.items() if code == IGNORE})
    query = (
        select(
            Installation.normalized_title,
            func.min(Installation.raw_title).label("example_title"),
            func.min(Installation.publisher).label("publisher"),
            func.count(func.distinct(Installation.device_id)).label("devices"),
            func.count().label("installs"),
        )
        .where(
            Installation.product_id.is_(None),
            Installation.removed_at.is_(None),
            Installation.normalized_title.is_not(None),
            Installation.normalized_title != "",
        )
        .group_by(Installation.normalized_title)
        .order_by(
            func.count(func.distinct(Installation.device_id)).desc(), Installation.normalized_title
        )
    )
    if ignored:
        query = query.where(
            Installation.normalized_title.not_in(bindparam("ign", ignored, expanding=True))
        )
    columns = ["normalized_title", "example_title", "publisher", "devices", "installs"]
    found = pd.DataFrame(session.execute(query).all(), columns=columns)
    matcher = _matcher(catalog)
    found = found[~found["normalized_title"].map(matcher.ignored).astype(bool)]
    found = found.head(limit).reset_index(drop=True)
    hints = suggest(found["normalized_title"], catalog)
    best = hints.drop_duplicates("normalized_title").set_index("normalized_title")
    listed = (
        hints.assign(
            text=hints["product_code"] + " (" + hints["score"].round().astype(int).astype(str) + ")"
        )
        .groupby("normalized_title")["text"]
        .agg(", ".join)
    )
    return found.assign(
        suggested_code=found["normalized_title"].map(best["product_code"]),
        score=found["normalized_title"].map(best["score"]),
        suggestions=found["normalized_title"].map(listed).fillna(""),
    )
