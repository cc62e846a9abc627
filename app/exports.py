"""Tables offered as files: every table in the app can be downloaded as CSV (the ablation tables also as
Markdown). One folder shared by all users; names carry a hash of the content, so the same table is written
once and a file is never rewritten while someone may be downloading it.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pandas as pd

from hinet.io import atomic_write_text
from hinet.results_table import frame_to_csv

EXPORT_DIR = Path(tempfile.gettempdir()) / "hinet_exports"
EXPORT_KEEP = 200  # files kept; Gradio copies a returned file into its cache, so old ones can go
DOWNLOAD_HEIGHT = 90  # px of a CSV download box: one file name, not the empty drop zone of an upload


def safe_stem(stem: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in stem)[:80] or "table"


def write_exports(texts: dict[str, str], stem: str, folder: Path | None = None, keep: int = EXPORT_KEEP) -> list[str]:
    """Write each `{suffix: text}` as `<folder>/<stem>_<hash>.<suffix>` (folder: EXPORT_DIR); the paths in order."""
    folder = Path(folder or EXPORT_DIR)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1("".join(texts.values()).encode()).hexdigest()[:10]
    paths = []
    for suffix, text in texts.items():
        path = folder / f"{safe_stem(stem)}_{digest}.{suffix}"
        if path.exists():
            path.touch()  # a reused export counts as new, so pruning keeps it
        else:
            atomic_write_text(path, text)
        paths.append(str(path))
    prune(folder, keep)
    return paths


def prune(folder: Path, keep: int = EXPORT_KEEP) -> None:
    """Keep the newest `keep` files: every new table adds some, and the folder is shared by all users."""
    dated = []
    for path in [*Path(folder).glob("*.csv"), *Path(folder).glob("*.md")]:  # not the writers' temporary files
        try:
            dated.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # pruned by another request meanwhile
            continue
    for _, path in sorted(dated)[:-keep]:
        path.unlink(missing_ok=True)


def export_csv(frame: pd.DataFrame | None, stem: str, folder: Path | None = None) -> str | None:
    """The table as a CSV file (None for no table or an empty one, so the download box stays empty)."""
    if frame is None or not isinstance(frame, pd.DataFrame) or frame.empty:
        return None
    return write_exports({"csv": frame_to_csv(frame)}, stem, folder)[0]


def table_csv_event(stem: str):
    """An event function for `table.change`: the shown table (what the user sees) as a CSV file."""

    def export(frame: pd.DataFrame | None) -> str | None:
        return export_csv(frame, stem)

    return export


__all__ = ["DOWNLOAD_HEIGHT", "EXPORT_DIR", "write_exports", "export_csv", "table_csv_event", "prune", "safe_stem"]
