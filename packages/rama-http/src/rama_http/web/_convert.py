"""Typed conversion of untrusted input (JSON, query strings, forms) into annotations.

``convert(value, SomeType)`` returns a value of the annotated type or raises
:class:`ValidationError` naming the field (``items[2].price``) and what was
wrong. Supported: ``str``, ``int``, ``float``, ``bool``, ``bytes`` (from str),
``None``, unions/``Optional``, ``Literal``, ``Enum``, ``UUID``, ``list[T]``,
``tuple[T, ...]``/fixed tuples, ``set[T]``, ``dict[str, T]``, dataclasses and
TypedDicts (nested), ``Any``. In *lax* mode (query strings and forms, whose
values are always text) ``"3"`` becomes ``3`` and ``"true"`` becomes ``True``;
JSON is strict: a string is not a number.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

__all__ = ["FieldError", "ValidationError", "convert"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})
_MISSING = object()


@dataclass(frozen=True, slots=True)
class FieldError:
    """One wrong field: where (``a.b[0]``) and why."""

    field: str
    message: str

    def to_json(self) -> dict[str, str]:
        """``{"field": ..., "message": ...}``."""
        return {"field": self.field, "message": self.message}


class ValidationError(ValueError):
    """Input of valid syntax but the wrong shape (answered 422)."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(f"{e.field or '<root>'}: {e.message}" for e in errors))
        self.errors = errors


def convert(value: Any, annotation: Any, *, lax: bool = False, field: str = "") -> Any:
    """``value`` as ``annotation``; raises :class:`ValidationError`."""
    errors: list[FieldError] = []
    out = _convert(value, annotation, lax, field, errors)
    if errors:
        raise ValidationError(errors)
    return out


def _join(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, lax: bool, field: str, errors: list[FieldError]) -> Any:
    if tp is Any or tp is object:
        return value
    if tp is None or tp is type(None):
        if value is None or (lax and value == ""):
            return None
        errors.append(FieldError(field, "must be null"))
        return None
    origin = get_origin(tp)
    if origin is typing.Annotated:
        return _convert(value, get_args(tp)[0], lax, field, errors)
    if origin is Union or origin is types.UnionType:
        return _union(value, get_args(tp), lax, field, errors)
    if origin is Literal:
        for choice in get_args(tp):
            if value == choice or (lax and isinstance(value, str) and str(choice) == value):
                return choice
        allowed = ", ".join(repr(c) for c in get_args(tp))
        errors.append(FieldError(field, f"must be one of {allowed}"))
        return None
    if origin in (list, set, frozenset, tuple) or tp in (list, set, frozenset, tuple):
        return _sequence(value, tp, origin or tp, lax, field, errors)
    if origin in (dict, Mapping) or tp is dict:
        return _mapping(value, tp, lax, field, errors)
    if isinstance(tp, type):
        return _scalar_or_class(value, tp, lax, field, errors)
    errors.append(FieldError(field, f"unsupported annotation {tp!r}"))
    return None


def _union(
    value: Any, options: tuple[Any, ...], lax: bool, field: str, errors: list[FieldError]
) -> Any:
    # None first so that an empty query value of `int | None` is None, not an error.
    ordered = sorted(options, key=lambda t: t is not type(None))
    # An exact type match wins before conversions (JSON 1 for `int | str` stays 1).
    for opt in ordered:
        if isinstance(opt, type) and type(value) is opt:
            return value
    for opt in ordered:
        trial: list[FieldError] = []
        out = _convert(value, opt, lax, field, trial)
        if not trial:
            return out
    names = " | ".join(_type_name(o) for o in options)
    errors.append(FieldError(field, f"must be {names}"))
    return None


def _sequence(
    value: Any, tp: Any, origin: Any, lax: bool, field: str, errors: list[FieldError]
) -> Any:
    if lax and isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        errors.append(FieldError(field, "must be an array"))
        return None
    args = get_args(tp)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            errors.append(FieldError(field, f"must have {len(args)} items"))
            return None
        return tuple(
            _convert(v, a, lax, _join(field, i), errors)
            for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    item = args[0] if args else Any
    items = [_convert(v, item, lax, _join(field, i), errors) for i, v in enumerate(value)]
    if origin is tuple:
        return tuple(items)
    if origin in (set, frozenset):
        try:
            return origin(items)
        except TypeError:
            errors.append(FieldError(field, "items must be hashable"))
            return None
    return items


def _mapping(value: Any, tp: Any, lax: bool, field: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(FieldError(field, "must be an object"))
        return None
    args = get_args(tp)
    key_tp, val_tp = args if len(args) == 2 else (Any, Any)
    return {
        _convert(k, key_tp, True, _join(field, str(k)), errors): _convert(
            v, val_tp, lax, _join(field, str(k)), errors
        )
        for k, v in value.items()
    }


def _scalar_or_class(value: Any, tp: type, lax: bool, field: str, errors: list[FieldError]) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        if lax and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        errors.append(FieldError(field, "must be a boolean"))
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if lax and isinstance(value, str):
            try:
                return int(value.strip(), 10)
            except ValueError:
                pass
        errors.append(FieldError(field, "must be an integer"))
        return None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if lax and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        errors.append(FieldError(field, "must be a number"))
        return None
    if tp is str:
        if isinstance(value, str):
            return value
        errors.append(FieldError(field, "must be a string"))
        return None
    if tp is bytes:
        if isinstance(value, (bytes, str)):
            return value.encode() if isinstance(value, str) else value
        errors.append(FieldError(field, "must be a string"))
        return None
    if tp is uuid.UUID:
        if isinstance(value, str):
            try:
                return uuid.UUID(value)
            except ValueError:
                pass
        errors.append(FieldError(field, "must be a UUID"))
        return None
    if issubclass(tp, enum.Enum):
        for member in tp:
            if member.value == value or (lax and str(member.value) == value):
                return member
        allowed = ", ".join(repr(m.value) for m in tp)
        errors.append(FieldError(field, f"must be one of {allowed}"))
        return None
    if dataclasses.is_dataclass(tp):
        return _dataclass(value, tp, lax, field, errors)
    if typing.is_typeddict(tp):
        return _typeddict(value, tp, lax, field, errors)
    if isinstance(value, tp):
        return value
    errors.append(FieldError(field, f"must be {_type_name(tp)}"))
    return None


def _dataclass(value: Any, tp: type, lax: bool, field: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(FieldError(field, "must be an object"))
        return None
    hints = get_type_hints(tp, include_extras=True)
    kwargs: dict[str, Any] = {}
    known = set()
    for f in dataclasses.fields(tp):
        if not f.init:
            continue
        known.add(f.name)
        if f.name in value:
            kwargs[f.name] = _convert(
                value[f.name], hints[f.name], lax, _join(field, f.name), errors
            )
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append(FieldError(_join(field, f.name), "field required"))
    for key in value:
        if key not in known and not lax:
            errors.append(FieldError(_join(field, str(key)), "unknown field"))
    if errors:
        return None
    return tp(**kwargs)


def _typeddict(value: Any, tp: type, lax: bool, field: str, errors: list[FieldError]) -> Any:
    if not isinstance(value, Mapping):
        errors.append(FieldError(field, "must be an object"))
        return None
    # __required_keys__ is wrong for string annotations (PEP 563): read the wrappers.
    hints: dict[str, Any] = {}
    required: set[str] = set()
    total = getattr(tp, "__total__", True)
    for name, hint in get_type_hints(tp, include_extras=True).items():
        origin = get_origin(hint)
        if origin is typing.NotRequired:
            hint = get_args(hint)[0]
        elif origin is typing.Required:
            hint = get_args(hint)[0]
            required.add(name)
        elif total:
            required.add(name)
        hints[name] = hint
    out: dict[str, Any] = {}
    for name, hint in hints.items():
        if name in value:
            out[name] = _convert(value[name], hint, lax, _join(field, name), errors)
        elif name in required:
            errors.append(FieldError(_join(field, name), "field required"))
    for key in value:
        if key not in hints and not lax:
            errors.append(FieldError(_join(field, str(key)), "unknown field"))
    return out
