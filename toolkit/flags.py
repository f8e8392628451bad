"""Command-line flags generated from a config dataclass, and the config built back from the parsed flags.

The field ``learning_rate`` becomes ``--learning-rate``, typed by its annotation, defaulting to
the field's default, with the field's trailing ``# comment`` as its help: the comment each field
carries is its ``--help`` text. A bool that defaults to False is a switch (``--overwrite``), one
that defaults to True a switch that turns it off (``--no-progress``, parsed as ``no_progress``),
``bool | None`` takes both spellings; ``tuple[X, ...]`` takes a comma-separated list.

Standard library only: ``toolkit classify`` builds its flags with it on the device.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing
from typing import Any, Callable, Iterable, Mapping, TypeVar

Config = TypeVar("Config")
FIELD_DEFAULT: Any = object()  # Flag.default when the field's own default stands


@dataclasses.dataclass(frozen=True)
class Flag:
    """Where one field's flag differs from what the field implies; parts left unset follow the field."""

    spelling: str | None = None  # the flag, e.g. "--from" (default: --field-name, or --no-field-name)
    help: str | None = None  # replaces the field's comment (plain text: a % stays a %); a --no- flag wants one
    metavar: str | None = None  # the value's name in --help
    type: Callable[[str], Any] | None = None  # parses (and checks) the value instead of the field's type
    choices: tuple[Any, ...] | None = None  # the values the flag accepts
    default: Any = FIELD_DEFAULT  # replaces the field's default; argparse.SUPPRESS: absent unless given
    show_default: bool = True  # False: no "(default: ...)" after the help


@functools.cache
def field_comments(config_class: type) -> dict[str, str]:
    """Each annotated field of ``config_class`` -> the comment that ends its line in the source ('' without one)."""
    try:
        source = textwrap.dedent(inspect.getsource(config_class))
    except (OSError, TypeError):  # no source to read (a frozen install): flags without help
        return {}
    comments = {
        token.start[0]: token.string.lstrip("#").strip()
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT and token.line[: token.start[1]].strip()
    }
    fields = [node for node in ast.parse(source).body[0].body if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)]
    return {node.target.id: comments.get(node.end_lineno, "") for node in fields}


def _destination(field: dataclasses.Field, hint: Any) -> str:
    """The parsed flag's name: ``no_<field>`` for a bool that defaults to True (its flag turns it off), else the field's."""
    return f"no_{field.name}" if hint is bool and field.default is True else field.name


def _comma_list(item_type: Callable[[str], Any]) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        return tuple(item_type(part.strip()) for part in text.split(",") if part.strip())

    parse.__name__ = f"comma-separated {getattr(item_type, '__name__', 'value')}"  # argparse names it in errors
    return parse


def _value_keywords(hint: Any, default: Any) -> dict[str, Any]:
    """The add_argument keywords that follow from a field's type: an action, or a type, and the default."""
    if hint is bool:
        return {"action": "store_true", "default": False}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: X, the flag's default being None
        hint = next(option for option in typing.get_args(hint) if option is not type(None))
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction, "default": default}
    if typing.get_origin(hint) is tuple:
        return {"type": _comma_list(typing.get_args(hint)[0]), "default": default}
    return {"type": hint, "default": default}


def _argument(field: dataclasses.Field, hint: Any, flag: Flag, comment: str) -> tuple[str, dict[str, Any]]:
    """The flag's spelling and add_argument keywords for one field."""
    destination = _destination(field, hint)
    spelling = flag.spelling or "--" + destination.replace("_", "-")
    default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
    default = default if flag.default is FIELD_DEFAULT else flag.default
    required = default is dataclasses.MISSING
    keywords = {**_value_keywords(hint, None if required else default), "dest": destination, "required": required}
    text = flag.help if flag.help is not None else (f"turn off: {comment}" if destination != field.name else comment)
    keywords["help"] = text.replace("%", "%%")
    if required or not flag.show_default:
        keywords["help"] += "%(default).0s"  # prints nothing: no "(default: ...)" from ArgumentDefaultsHelpFormatter
    keywords.update({key: getattr(flag, key) for key in ("metavar", "choices", "type") if getattr(flag, key) is not None})
    return spelling, keywords


def add_dataclass_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    config_class: type,
    overrides: Mapping[str, Flag] | None = None,
    fields: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> None:
    """Add one flag per field of ``config_class`` to ``parser`` or an argument group.

    ``fields`` picks the fields and their order (default: all, in class order), less ``exclude``;
    ``overrides`` changes a field's flag where the field alone does not say it.
    """
    hints = typing.get_type_hints(config_class)
    comments = field_comments(config_class)
    by_name = {field.name: field for field in dataclasses.fields(config_class)}
    excluded = set(exclude)
    for name in [name for name in (by_name if fields is None else fields) if name not in excluded]:
        spelling, keywords = _argument(by_name[name], hints[name], (overrides or {}).get(name, Flag()), comments.get(name, ""))
        parser.add_argument(spelling, **keywords)


def known_fields(config_class: type, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``payload`` that are fields of ``config_class`` (a saved config may hold keys it no longer has)."""
    names = {field.name for field in dataclasses.fields(config_class)}
    return {key: value for key, value in payload.items() if key in names}


def config_from_arguments(config_class: type[Config], arguments: argparse.Namespace, **changes: Any) -> Config:
    """The ``config_class`` that the flags of add_dataclass_arguments in ``arguments`` describe, with ``changes`` on top.

    Fields without a flag, or with an argparse.SUPPRESS flag not given, keep their defaults.
    """
    given = vars(arguments)
    hints = typing.get_type_hints(config_class)
    values = {}
    for field in dataclasses.fields(config_class):
        destination = _destination(field, hints[field.name])
        if destination in given:
            values[field.name] = given[destination] if destination == field.name else not given[destination]
    return config_class(**(values | changes))
