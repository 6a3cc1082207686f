"""Files crossing the HTTP boundary: what a caller may name, what we hand out, and what an error may say.

A caller may name only files it uploaded through this server (Gradio's upload folder). Gradio checks that itself once
the app counts as launched (`ui/server.py` sees to it); `uploaded` checks it again in our own code, so a form handler
never opens a server path that came from a request. Files we hand out are results (`outputs/results`, served) or
copies placed in Gradio's upload cache by `offer` (kept inputs, LoRA samples, exports), never the folders they live
in. Error messages name files by their base name only.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import processing_utils, utils
from gradio.exceptions import ComponentProcessingError, InvalidPathError

log = logging.getLogger(__name__)

NOT_UPLOADED = ("a file in this request was not uploaded to this server; upload it first (in the browser, or with "
                "gradio_client's handle_file)")

# an absolute path (POSIX, ~/ or a Windows drive) with at least one folder; group 1 is its last part
_PATH = re.compile(r"(?<![\w.:/\\~-])(?:~|[A-Za-z]:)?[/\\](?:[^\s'\"`<>|,;()\[\]/\\]+[/\\])+([^\s'\"`<>|,;()\[\]/\\]*)")


def upload_folder() -> Path:
    return Path(utils.get_upload_folder()).resolve()


def uploaded(file: Any) -> str:
    """The path of a file the caller uploaded (a path string or a Gradio file object), or a `gr.Error`."""
    path = Path(file if isinstance(file, str) else getattr(file, "path", None) or getattr(file, "name", str(file)))
    resolved = path.resolve()
    if path.is_symlink() or not resolved.is_file() or not resolved.is_relative_to(upload_folder()):
        raise gr.Error(NOT_UPLOADED, title="Check the inputs")
    return str(resolved)


def offer(path: str | Path) -> str:
    """A copy of a server file we made, in Gradio's upload cache, to show or download without serving its folder."""
    return processing_utils.save_file_to_cache(path, str(upload_folder()))


def redact_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part, so no message shows the server's folders."""
    return _PATH.sub(lambda match: match.group(1), text)


class GuardedBlocks(gr.Blocks):
    """`gr.Blocks` whose every event ends in a message a person can read, with no server path in it: a file the
    caller did not upload, our own errors with their paths cut, anything unexpected logged and worded plainly."""

    async def process_api(self, *args, **kwargs):
        try:
            return await super().process_api(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error(NOT_UPLOADED, title="Check the inputs") from None
        except ComponentProcessingError:  # e.g. text where a number goes
            raise gr.Error("a value in this request does not fit its field (a number, a choice, a file); check the "
                           "inputs", title="Check the inputs") from None
        except gr.Error as exc:
            exc.message = redact_paths(exc.message)
            raise
        except Exception as exc:  # the trace goes to the log, the person gets the kind of failure
            log.exception("event failed")
            raise gr.Error(f"Internal error ({type(exc).__name__}); see the server log.") from None
