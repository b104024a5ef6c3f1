"""The one base model of every pipeline and profile section, and how its errors read.

:func:`error_lines` turns a pydantic :class:`~pydantic.ValidationError` into
one line per problem, each starting with the dotted key a user writes in the
file (``features.bands.alpha[1]``) — never pydantic's internal union tags —
and saying what is allowed, with "did you mean" for a misspelt key.
"""

from __future__ import annotations

import difflib
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator


class StrictModel(BaseModel):
    """A config section that refuses keys it does not define, NaN or infinite numbers, and true/false as numbers."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            bad = [
                f"{k}: must be a number, not {str(v).lower()}"
                for k, v in data.items()
                if isinstance(v, bool)
                and k in cls.model_fields
                and _unwrap(cls.model_fields[k].annotation)[0] in (int, float)
            ]
            if bad:
                raise ValueError("\n".join(bad))
        return data


def _unwrap(tp: Any) -> tuple[Any, str | None]:
    """Strip ``Annotated`` and ``Optional``; return the type and its union discriminator, if any."""
    disc = None
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            args = get_args(tp)
            for meta in args[1:]:
                d = getattr(meta, "discriminator", None)
                if isinstance(d, str):
                    disc = d
            tp = args[0]
            continue
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            if len(args) == 1:
                tp = args[0]
                continue
        return tp, disc


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _tags(member: Any, disc: str) -> tuple[Any, ...]:
    """Return the tag values a union member accepts for ``disc`` (nested tagged unions included)."""
    tp, _ = _unwrap(member)
    if _is_union(tp):
        return tuple(t for m in get_args(tp) for t in _tags(m, disc))
    if _is_model(tp) and disc in tp.model_fields:
        ann = tp.model_fields[disc].annotation
        return get_args(ann) if get_origin(ann) is Literal else ()
    return ()


def union_tags(tp: Any, disc: str) -> list[Any]:
    """Return the tags a discriminated union accepts (``["synthetic", "lsl", "file"]``)."""
    tp, _ = _unwrap(tp)
    return [t for m in (get_args(tp) if _is_union(tp) else (tp,)) for t in _tags(m, disc)]


class _Where:
    """The key path of an error location and the schema found there."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.parent: type[BaseModel] | None = None  # model holding the last key
        self.here: Any = None  # type at the location (None: unknown)
        self.disc: str | None = None  # discriminator of ``here`` (a tagged union)
        self.in_union = False  # the location passed through an untagged union


def _walk(root: Any, loc: tuple[Any, ...]) -> _Where:
    w = _Where()
    tp, disc = _unwrap(root)
    for item in loc:
        if disc is not None and _is_union(tp):  # the item is a union tag, not a key
            chosen = next((m for m in get_args(tp) if item in _tags(m, disc)), None)
            tp, disc = _unwrap(chosen) if chosen is not None else (None, None)
            continue
        if _is_union(tp):  # an untagged union: pydantic names the member tried
            w.in_union = True
            tp, disc = None, None
            continue
        if tp is None and isinstance(item, str) and ("[" in item or item in _TYPE_WORDS):
            continue
        if isinstance(item, int) and w.parts:
            w.parts[-1] += f"[{item}]"
        else:
            w.parts.append(str(item))
        if _is_model(tp):
            w.parent = tp
            field = tp.model_fields.get(str(item))
            tp, disc = _unwrap(field.annotation) if field is not None else (None, None)
            if field is not None and isinstance(field.discriminator, str):
                disc = field.discriminator
        elif get_origin(tp) is dict:
            w.parent = None
            tp, disc = _unwrap(get_args(tp)[1])
        elif get_origin(tp) in (list, tuple, set):
            args = [a for a in get_args(tp) if a is not Ellipsis]
            idx = item if isinstance(item, int) and item < len(args) else 0
            tp, disc = _unwrap(args[idx]) if args else (None, None)
        else:
            tp, disc = None, None
    w.here, w.disc = tp, disc
    return w


_TYPE_WORDS = {"str", "int", "float", "bool", "bytes", "none"}
#: A key a message refers to, relative to the section raising it: `upper` → controller.upper.
_SIBLING = re.compile(r"`([A-Za-z_][A-Za-z0-9_.]*)`")
_REL_KEY = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_]*(?:(?:\.[A-Za-z0-9_]+)|\[\d+\])*): (?P<msg>.+)$", re.S)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(parent: type[BaseModel] | None, key: str, parts: list[str]) -> str:
    """Return "unknown key" with a hint: a close spelling, the sub-section it belongs in, or what is allowed."""
    if parent is None:
        return "unknown key"
    fields = list(parent.model_fields)
    close = difflib.get_close_matches(key, fields, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    for name, field in parent.model_fields.items():
        sub, _ = _unwrap(field.annotation)
        if _is_model(sub) and key in sub.model_fields:
            return f"unknown key here; it belongs in [{'.'.join([*parts[:-1], name])}]"
    return f"unknown key; allowed: {', '.join(fields)}"


def unknown_key(model: type[BaseModel], key: str, where: tuple[str, ...] = ()) -> str:
    """Return the message for ``key``, unknown in ``model`` (at ``where``), with a hint."""
    return _unknown_key(model, key, [*where, key])


def _message(e: dict[str, Any], w: _Where, parts: list[str]) -> str:
    kind, msg = e["type"], e["msg"]
    if kind == "missing":
        field = w.parent.model_fields.get(w.parts[-1]) if w.parent is not None and w.parts else None
        desc = f" ({field.description})" if field is not None and field.description else ""
        return f"required key is missing{desc}"
    if kind == "extra_forbidden":
        return _unknown_key(w.parent, parts[-1] if parts else "", parts)
    msg = msg.replace("Input should be", "must be").replace("Input tag", "tag")
    msg = msg.replace("a valid integer, got a number with a fractional part", "a whole number")
    if kind == "int_parsing_size":
        msg = "is too large for a whole number"
    if "input" in e and not isinstance(e["input"], dict):
        msg = f"{msg} (got {_short(e['input'])})"
    return msg


def error_lines(err: ValidationError, root: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Return one ``key: what is wrong`` line per problem of a validation error.

    Parameters
    ----------
    err : ValidationError
        What pydantic raised validating ``root``.
    root : type
        The model (or annotated union) that was validated: it maps error
        locations back to the keys of the file.
    prefix : tuple of str
        Keys before the root's own (``("controller",)``).
    """
    out: dict[str, list[str]] = {}
    for e in err.errors(include_url=False):
        w = _walk(root, tuple(e["loc"]))
        parts = list(prefix) + w.parts
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            disc = str(e.get("ctx", {}).get("discriminator", w.disc or "")).strip("'\"")
            tags = dict.fromkeys(union_tags(w.here, disc)) if w.here is not None else {}
            allowed = ", ".join(repr(t) for t in tags)
            allowed = allowed or str(e.get("ctx", {}).get("expected_tags", ""))
            parts.append(disc)
            if e["type"] == "union_tag_invalid":
                lines = [("", f"{e['ctx']['tag']!r} is not allowed; allowed: {allowed}")]
            else:
                lines = [("", f"required key is missing; allowed: {allowed}")]
        elif e["type"] in ("value_error", "assertion_error"):
            text = str(e.get("ctx", {}).get("error", e["msg"]))
            lines = []
            for line in text.splitlines() or [text]:
                m = _REL_KEY.match(line)
                head = m["key"].split(".")[0].split("[")[0] if m else ""
                keyed = _is_model(w.here) and head in w.here.model_fields or get_origin(w.here) is dict
                if m and keyed:
                    lines.append((m["key"], m["msg"]))
                else:
                    lines.append(("", line))
        else:
            lines = [("", _message(e, w, parts))]
        for rel, text in lines:
            key = ".".join(p for p in (*parts, rel) if p)
            text = _SIBLING.sub(lambda m, parts=parts: ".".join([*parts, m[1]]), text)
            out.setdefault(key, []).append(text)
    result = []
    for key, texts in out.items():
        merged = "; or ".join(dict.fromkeys(texts)) if len(texts) > 1 and _from_union(texts) else None
        for text in [merged] if merged else texts:
            result.append(f"{key}: {text}" if key else text)
    return result


def _from_union(texts: list[str]) -> bool:
    """Whether several messages on one key are the branches of one union (each says what it must be)."""
    return all(t.startswith("must be") for t in texts)
