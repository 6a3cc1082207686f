"""Flags generated from the typed models the API and the app use (a method's options, a training config), and the
parser class that lets a command add its costly flags only when it is the one being parsed."""
from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from pydantic import BaseModel


class CommandParser(argparse.ArgumentParser):
    """A command's parser; `defer(add)` runs `add(parser)` when this command is parsed (or its --help shown), so
    `nstdiff --help` and the other commands never import what those flags are made from (the methods' options and
    the decoder training config live in modules that import torch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self.deferred.append(add)

    def parse_known_args(self, args=None, namespace=None):
        while self.deferred:
            self.deferred.pop(0)(self)
        return super().parse_known_args(args, namespace)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_help(model: type[BaseModel], name: str) -> str:
    info = model.model_fields[name]
    return f"{info.description or ''} (default: {info.default})".strip()


def scalar_type(annotation: Any):
    """The argparse type (and choices) for a simple pydantic field annotation, or None if it has no flag."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return scalar_type(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if Path in inner:  # an image reference: a path on the command line
            return Path, None
        return scalar_type(inner[0]) if len(inner) == 1 else None
    if origin is typing.Literal:
        return str, [str(a) for a in args]
    if origin is list and args and args[0] in (str, float, int):
        return (lambda text, t=args[0]: [t(x.strip()) for x in text.split(",") if x.strip()]), None
    if annotation is bool:
        return bool, None
    if annotation in (int, float, str):
        return annotation, None
    return None


def add_options_flags(parser: argparse.ArgumentParser, models: Sequence[type[BaseModel]]) -> list[str]:
    """Add a flag for every simple field of the methods' options models (lists as comma-separated values)."""
    group = parser.add_argument_group("method options")
    added: list[str] = []
    for model in models:
        for name, info in model.model_fields.items():
            kind = scalar_type(info.annotation)
            if name in added or kind is None:
                continue
            convert, choices = kind
            where = f"[{model.__name__.removesuffix('Options').lower()}] {field_help(model, name)}"
            if convert is bool:
                group.add_argument(flag(name), dest=f"opt_{name}", action=argparse.BooleanOptionalAction,
                                   default=None, help=where)
            else:
                group.add_argument(flag(name), dest=f"opt_{name}", type=convert, choices=choices, default=None,
                                   help=where)
            added.append(name)
    return added


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """A flag for every field of a training config (`--learning-rate` also as `--lr`), and --quiet."""
    for name, info in model.model_fields.items():
        convert, choices = (Path, None) if info.annotation is Path else scalar_type(info.annotation)
        flags = [flag(name), "--lr"] if name == "learning_rate" else [flag(name)]
        text = info.description if info.is_required() or info.default is None else field_help(model, name)
        if convert is bool:
            parser.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(*flags, dest=name, type=convert, choices=choices, required=info.is_required(),
                                default=None, help=text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def configured(model: type[BaseModel], args: argparse.Namespace) -> BaseModel:
    """The config `model` from the flags `add_config_flags` added, unset ones left to its defaults."""
    return model(**{name: getattr(args, name) for name in model.model_fields if getattr(args, name) is not None})
