"""The error types every front end (CLI, API, app) turns into a readable message.

Each message says what is wrong and what to do about it; none of them needs a stack trace to be understood.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class NstdiffError(Exception):
    """Base class: anything nstdiff raises on purpose."""

    exit_code = 1


class InputError(NstdiffError, ValueError):
    """A file, image or number the user gave us cannot be used as it is."""

    exit_code = 2


class ModelNotFoundError(NstdiffError):
    """A model (weights) is not on this machine and may not or could not be fetched."""

    def __init__(self, name: str, searched: list[str | Path], fix: str, reason: str = ""):
        self.name = name
        self.searched = [str(p) for p in searched]
        self.fix = fix
        places = "; ".join(self.searched) or "nowhere"
        why = f" ({reason})" if reason else ""
        super().__init__(f"model '{name}' is not available{why}; searched: {places}; fix: {fix}")


class ModelFileError(NstdiffError):
    """A weights file exists but is not what it should be (checksum, format, shapes): the user's file or download
    is bad, so, like bad input, exit code 2."""

    exit_code = 2


class ResourceError(NstdiffError):
    """A job needs more memory than this machine can give it; the message names the limit and a size that fits."""

    exit_code = 2


class Cancelled(NstdiffError):
    """The run was cancelled by the user; nothing was written."""

    exit_code = 130

    def __init__(self, step: int = 0, total: int = 0):
        self.step, self.total = step, total
        super().__init__(f"cancelled at step {step}/{total}; nothing was written")


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem, `field: message`, without pydantic's URLs."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "value"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
