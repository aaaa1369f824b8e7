"""Drafts of watchlist files edited in the browser: validated exactly as the loader validates
a saved file (same function, same `file:line` errors), and saved atomically into the folder.

The file stays the source of truth: saving writes `<id>.yaml` (temp file, fsync, rename), the
registry's hot reload picks it up, and git sees an ordinary edit. A folder that is not
writable (a read-only mount in the container) is reported, and the console offers the YAML to
download instead.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from monitor.model import Watchlist
from monitor.watchlists import (
    ALIASES_FILE,
    RESERVED,
    SCHEMA_COMMENT,
    WatchlistError,
    load_aliases,
    load_watchlist_text,
)
from monitor.watchlists.validation import ID_RE
from monitor.yamlfile import line_of

MAX_DRAFT_BYTES = 256 * 1024

NEW_TEMPLATE = f"""{SCHEMA_COMMENT}
name: A new watchlist
description: >
  What the desk wants, for the next editor.
query: |
  @dprk AND (missile* OR launch*)
alert:
  slack: ["#nk-desk"]
"""


@dataclass(frozen=True, slots=True)
class DraftCheck:
    """A draft's validation: the watchlist it would be, or its errors (line numbers are the
    draft's own for errors in the draft; an examples file's errors name that file)."""

    watchlist: Watchlist | None
    errors: tuple[WatchlistError, ...]

    @property
    def ok(self) -> bool:
        return self.watchlist is not None and not self.errors


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def id_problem(wid: str) -> str | None:
    if not ID_RE.match(wid):
        return "the id is the file name: lower-case letters, digits, - and _ (at most 64)"
    if f"{wid}.yaml" in RESERVED or wid == "sources":
        return f"'{wid}' is a reserved name"
    return None


def check_draft(
    directory: Path, wid: str, text: str, source_ids: set[str] | None = None
) -> DraftCheck:
    """Validate `text` as `<directory>/<wid>.yaml` against the folder's aliases, and its
    `sources:` against the known source ids (when given)."""
    label = f"{wid}.yaml"
    problem = id_problem(wid)
    if problem is not None:
        return DraftCheck(None, (WatchlistError(label, None, problem),))
    if len(text.encode("utf-8")) > MAX_DRAFT_BYTES:
        return DraftCheck(
            None, (WatchlistError(label, None, f"the draft is over {MAX_DRAFT_BYTES} bytes"),)
        )
    aliases, alias_errors = load_aliases(directory / ALIASES_FILE)
    watchlist, errors = load_watchlist_text(text, directory / label, aliases, label)
    errors = [*errors]
    if watchlist is not None and source_ids is not None:
        unknown = [s for s in watchlist.sources if s not in source_ids]
        if unknown:
            from ruamel.yaml import YAML

            data = YAML(typ="rt").load(text)
            errors.append(
                WatchlistError(
                    label,
                    line_of(data, ("sources",)),
                    f"sources: unknown source id(s) {', '.join(unknown)}; use ids from the "
                    "sources file",
                )
            )
    # Alias file errors belong to another file: shown, but they do not make the draft invalid.
    shown = tuple(errors) + tuple(alias_errors)
    return DraftCheck(watchlist if not errors else None, shown)


def saved_text(directory: Path, wid: str) -> str | None:
    try:
        return (directory / f"{wid}.yaml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


class NotWritable(Exception):
    """The watchlist folder cannot be written (read-only mount, permissions)."""


def save_atomically(directory: Path, wid: str, text: str) -> Path:
    """Write `<wid>.yaml` so a reader sees the old file or the new one, never half of it.

    The temp file's name does not end in .yaml, so the loader and the watcher ignore it."""
    target = directory / f"{wid}.yaml"
    if not text.endswith("\n"):
        text += "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{wid}.", suffix=".tmp")
    except OSError as exc:
        raise NotWritable(f"{directory} is not writable ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise NotWritable(f"cannot write {target.name} ({exc.strerror or exc})") from exc
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return target
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return target


def writable(directory: Path) -> bool:
    """Whether a save would work (a temp file can be created and removed)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".monitor-probe.", suffix=".tmp")
    except OSError:
        return False
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)
    return True
