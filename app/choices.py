"""Model pickers shared by several tabs: the restore tab lists them, the ablation tab refreshes them when it
opens a run there."""

from __future__ import annotations

from app.models import ModelStore, SessionModels


def task_model_choices(store: ModelStore | SessionModels, task: str) -> tuple[list[tuple[str, str]], list[str], str]:
    """(dropdown choices, default selection, warnings markdown) for a task; a session's view of the store
    (`ModelStore.for_session`) lists that session's uploads too."""
    entries, warnings = store.scan(task)
    default = store.default_entry(entries, task)
    text = "\n".join(f"- ⚠️ {w}" for w in warnings)
    return [(e.label, e.id) for e in entries], [default.id], text


__all__ = ["task_model_choices"]
