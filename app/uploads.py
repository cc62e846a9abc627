"""Your own checkpoints in the app, without any Gradio: check an uploaded file, load it weights-only, and add
it to one session's `SessionUploads` (the panel is `app/uploads_panel.py`).

Accepted: a `.safetensors` of this project (its config read from the metadata, or inferred from the weights
when the metadata has none) and an official HINet `.pth`/`.pt` (read with `torch.load(weights_only=True)`,
which refuses any pickled object but tensors and plain containers, so no code in the file runs; its config is
inferred from the weights). Everything is checked before anything is kept: the name, the extension, the size
(from the file system, before a byte is read), then a full load (`hinet.checkpoint.load_any_checkpoint`).
A refused file raises a `CheckpointError` or `ConfigError` whose message says why; nothing is kept.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from app.models import UPLOAD_PREFIX, ModelEntry, ModelStore, SessionUploads, checkpoint_entry
from hinet.checkpoint import OFFICIAL_SUFFIXES, load_any_checkpoint
from hinet.errors import CheckpointError, ConfigError

UPLOAD_SUFFIXES = (".safetensors", *OFFICIAL_SUFFIXES)
MAX_UPLOAD_MB = 400  # the paper-size HINet is 355 MB of float32 weights
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024**2
MAX_UPLOADS = 3  # per session: each may hold a model of up to MAX_UPLOAD_MB in memory
UPLOADS_TTL_S = 3 * 3600  # a session's uploads (and their files) go this long after its last upload
UPLOADS_ROOT: str | None = None  # where each session's folder of uploads is made; None: the system's temp folder
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")


def upload_name(name: str | None, path: str | Path) -> str:
    """The name the upload is listed under: the one typed, else the file's name without its extension."""
    name = (name or "").strip() or re.sub(r"[^A-Za-z0-9._-]+", "_", Path(path).stem).strip("._-")[:40]
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(
            f"the name {name!r} cannot be used: up to 40 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit"
        )
    return name


def check_upload_file(path: str | Path) -> Path:
    """The upload's path once its extension and size pass, read from the file system only."""
    path = Path(path)
    if path.suffix.lower() not in UPLOAD_SUFFIXES:
        raise CheckpointError(
            f"refused {path.name}: a checkpoint must be a .safetensors file of this project or an official HINet "
            f"{' or '.join(OFFICIAL_SUFFIXES)} file"
        )
    try:
        size = path.stat().st_size
    except OSError as error:
        raise CheckpointError(f"the uploaded file cannot be read ({error}); upload it again") from None
    if size > MAX_UPLOAD_BYTES:
        raise CheckpointError(
            f"refused {path.name}: it is {size / 1024**2:.0f} MB, more than the limit of {MAX_UPLOAD_MB} MB for an "
            "uploaded checkpoint"
        )
    return path


def add_upload(
    store: ModelStore, uploads: SessionUploads | None, path: str | Path, name: str | None = None
) -> tuple[SessionUploads, str]:
    """(the session's uploads with this checkpoint added, a message saying what was added and where it is
    listed); a checkpoint uploaded under a name already taken replaces that one. The file is copied into the
    session's folder and its model, loaded once to check it, is kept in the store's cache."""
    uploads = uploads or SessionUploads()
    path = check_upload_file(path)
    name = upload_name(name, path)
    entry_id = UPLOAD_PREFIX + name
    kept = tuple(e for e in uploads.entries if e.id != entry_id)
    if len(kept) >= MAX_UPLOADS:
        raise ConfigError(
            f"this session already holds {MAX_UPLOADS} uploaded models, the limit; upload under one of their names "
            f"({', '.join(e.id.removeprefix(UPLOAD_PREFIX) for e in kept)}) to replace it"
        )
    # Loaded from the upload itself, weights only: a file that is refused leaves nothing behind.
    try:
        model, metadata = load_any_checkpoint(path, infer_config=True)
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if path.name in message else f"refused {path.name}: {message}") from None
    folder = Path(uploads.folder or tempfile.mkdtemp(prefix="hinet_uploads_", dir=UPLOADS_ROOT))
    copy = folder / f"{name}{path.suffix.lower()}"
    for suffix in UPLOAD_SUFFIXES:  # the file of the upload this one replaces
        (folder / f"{name}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(path, copy)
    entry = checkpoint_entry(copy, entry_id, f"uploaded {name}", "uploaded", metadata)
    store.model_of(entry, loaded=model)
    return replace(uploads, folder=str(folder), entries=(*kept, entry)), upload_message(entry, metadata)


def upload_message(entry: ModelEntry, metadata: dict) -> str:
    """What was added, how its config was found, and where it is listed now (for this session only)."""
    origin = {"official .pth": "an official HINet file, config inferred from the weights"}.get(
        metadata.get("source"), metadata.get("source") or "config read from the file's metadata"
    )
    where = f"the {entry.task} task's model lists" if entry.task else "the model lists of every task"
    trained = "" if entry.trained else " Its metadata does not say it was trained, so it is listed as untrained."
    return (
        f"Added **{entry.id}** ({origin}: {entry.config.describe()}). It is in {where} on every tab, for this "
        f"browser session only.{trained}"
    )


def uploads_markdown(uploads: SessionUploads | None) -> str:
    if not uploads or not uploads.entries:
        return "No uploaded models in this session."
    return "\n".join(f"- `{e.id}`: {e.label}" for e in uploads.entries)


def delete_uploads(uploads: SessionUploads | None) -> None:
    """Remove a session's uploaded files (its `gr.State` expired or the page closed)."""
    if uploads and uploads.folder:
        shutil.rmtree(uploads.folder, ignore_errors=True)


__all__ = [
    "UPLOAD_SUFFIXES",
    "MAX_UPLOAD_MB",
    "MAX_UPLOAD_BYTES",
    "MAX_UPLOADS",
    "UPLOADS_TTL_S",
    "upload_name",
    "check_upload_file",
    "add_upload",
    "upload_message",
    "uploads_markdown",
    "delete_uploads",
]
