"""Uploaded files: a path from a request is used only if this server's upload route stored it.

Gradio refuses paths that were never uploaded, but only in an app started with launch(): served with
gr.mount_gradio_app, it copies any server file it is named into its cache first (docs/gradio-filedata-paths.md).
This check holds either way, so the training text can only ever be a file a user uploaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from gpt.errors import DataError


def uploaded_file(path, request: gr.Request | None) -> Path:
    """The real path of a file uploaded to the app serving this request, else a DataError (no server path is
    echoed back)."""
    refused = DataError("that file was not uploaded to this app: upload your file again")
    try:
        demo = request.app.get_blocks()  # the app this request came to: its upload route recorded the files
    except AttributeError:
        raise refused from None
    if not path:
        raise refused
    try:
        real = Path(os.fspath(path)).resolve(strict=True)  # follows symlinks, removes '..'
        cache = Path(get_upload_folder()).resolve(strict=True)
    except (OSError, RuntimeError, TypeError):
        raise refused from None
    if not real.is_relative_to(cache) or real == cache or not real.is_file():
        raise refused
    # recorded by Gradio's upload route; still true when Gradio's own check was skipped and it copied a file in
    if real not in {Path(f).resolve() for f in list(demo.upload_file_set)}:
        raise refused
    return real
