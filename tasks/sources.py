"""Drop folders: where each feed's files arrive (data/sources.yaml, or SLM_SOURCES_FILE).

    feeds:
      installs:
        - {folder: demo/installs/osquery, format: osquery}   # format optional: detected
        - {folder: /mnt/exports/sccm, pattern: "*.csv"}
      hr: [{folder: demo/hr}]

Folders are relative to the sources file's own folder. Files are taken in name order; which
of them were already applied is the ingestion ledger's business (by checksum), not this one's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from licenseflow.errors import InputRejected, RowError
from licenseflow.settings import get_settings


@dataclass(frozen=True)
class Source:
    feed: str
    folder: Path
    format: str | None = None
    pattern: str = "*"


def load_sources(path: Path | None = None) -> dict[str, list[Source]]:
    path = Path(path or get_settings().path("sources_file"))
    if not path.exists():
        return {}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InputRejected(str(path), [RowError(str(path), None, None, None, str(exc))]) from None
    feeds = document.get("feeds") or {}
    result: dict[str, list[Source]] = {}
    for feed, entries in feeds.items():
        result[feed] = []
        for number, entry in enumerate(entries or [], start=1):
            if not isinstance(entry, dict) or "folder" not in entry:
                reason = f"feed {feed!r} entry {number} needs a 'folder'"
                raise InputRejected(str(path), [RowError(str(path), number, feed, entry, reason)])
            folder = Path(entry["folder"])
            if not folder.is_absolute():
                folder = path.parent / folder
            result[feed].append(
                Source(feed, folder, entry.get("format"), entry.get("pattern", "*"))
            )
    return result


def feed_files(feed: str, sources_file: Path | None = None) -> list[tuple[Path, str | None]]:
    """Every file in the feed's drop folders, in name order, with the declared format."""
    files = []
    for source in load_sources(sources_file).get(feed, []):
        if source.folder.is_dir():
            for path in sorted(source.folder.glob(source.pattern)):
                if path.is_file() and not path.name.startswith("."):
                    files.append((path, source.format))
    return files
