"""The one error wrapper of every tab's event handlers.

Project errors (`HINetError`) reach the user as their plain message; running out of memory gets advice;
anything else is logged with its traceback and shown as a short internal error, so the app keeps serving.
"""

from __future__ import annotations

import functools
import inspect
import logging

import gradio as gr

from hinet.errors import HINetError

log = logging.getLogger(__name__)


def _as_gradio_error(error: Exception, name: str) -> gr.Error:
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, HINetError):
        return gr.Error(str(error))
    if isinstance(error, MemoryError):
        log.exception("out of memory in %s", name)
        return gr.Error("Out of memory: use tiles (a smaller tile size), a smaller image or a smaller model.")
    log.exception("internal error in %s", name)
    return gr.Error(f"Internal error: {type(error).__name__}: {error}")


def user_errors(fn):
    """Show project errors as their plain message and anything unexpected as a short internal error.

    Generator functions stay generator functions: Gradio streams an event only when its function is one.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator_wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - the app must keep serving; the log keeps the traceback
                raise _as_gradio_error(error, fn.__name__) from None

        return generator_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - the app must keep serving; the log keeps the traceback
            raise _as_gradio_error(error, fn.__name__) from None

    return wrapper


__all__ = ["user_errors"]
