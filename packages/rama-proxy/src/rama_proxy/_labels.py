"""Username labels: ``john-country-us-residential`` -> user ``john`` + a :class:`ProxyFilter`.

The username is split on ``-`` (``separator=``; pick another one when user
names contain ``-``); the first part is the user whose password is checked,
the rest are labels:

- key/value labels ``id``, ``pool``, ``continent``, ``country``, ``state``,
  ``city``, ``carrier``, ``asn`` take the next part as their value
  (``country-us``); a repeated key ORs its values (``country-us-country-gb``);
  ``*`` accepts any value; values are lowercased (``asn-AS13335`` -> ``13335``);
- flags ``datacenter``, ``residential``, ``mobile`` (``!residential`` excludes);
- ``session-<key>``: a sticky upstream for that key (case kept);
- ``newconn``: this request gets a fresh upstream connection (no pooled one),
  so per-request rotation is not defeated by keep-alive.

Keys are case-insensitive. In strict mode (the default) an unknown label, a
key without a value or contradicting flags raise ``ValueError`` naming the
label (the authenticator refuses the credentials); lossy mode skips them.
Custom labels plug in with :meth:`UsernameLabelParser.register`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from ._filter import FILTER_FIELDS, FLAG_FIELDS, ProxyFilter

__all__ = [
    "NEW_CONNECTION_LABEL",
    "SESSION_LABEL",
    "LabelParser",
    "UsernameLabelParser",
    "format_username",
    "normalize_asn",
]

SESSION_LABEL = "session"
NEW_CONNECTION_LABEL = "newconn"

LabelParser = Callable[[ProxyFilter, str | None], ProxyFilter]
"""A custom label: ``(filter so far, value or None for a flag) -> new filter``.

Raise ``ValueError`` to refuse the username (strict mode) or skip the label (lossy).
"""

_KEYS = frozenset(FILTER_FIELDS)
_FLAGS = frozenset(FLAG_FIELDS)


def normalize_asn(value: str) -> str:
    """``AS13335`` / ``as13335`` / ``13335`` -> ``13335`` (other values lowercased as is)."""
    v = value.strip().lower()
    if v.startswith("as") and v[2:].isdigit():
        return v[2:]
    return v


def _check_value(label: str, value: str) -> None:
    if not value:
        raise ValueError(f"label {label!r} has an empty value")
    if not value.isprintable() or " " in value:
        raise ValueError(f"label {label!r} has a value with unprintable characters")


class UsernameLabelParser:
    """A :class:`~rama_proxy.UsernameParser` that reads proxy labels from the username."""

    def __init__(
        self,
        *,
        strict: bool = True,
        separator: str = "-",
        custom: Mapping[str, LabelParser | None] | None = None,
        custom_flags: Mapping[str, LabelParser | None] | None = None,
        max_labels: int = 64,
    ) -> None:
        if not separator:
            raise ValueError("the label separator must not be empty")
        self.strict = strict
        """Refuse unknown or malformed labels (True) or skip them (False)."""
        self.separator = separator
        self.max_labels = max_labels
        """More parts than this is refused in both modes (bounds per-request work)."""
        self._values: dict[str, LabelParser | None] = {}
        self._flags: dict[str, LabelParser | None] = {}
        for key, parser in (custom or {}).items():
            self.register(key, parser)
        for key, parser in (custom_flags or {}).items():
            self.register(key, parser, takes_value=False)

    def register(
        self, key: str, parser: LabelParser | None = None, *, takes_value: bool = True
    ) -> None:
        """Add (or override) label ``key``.

        ``parser(filter, value)`` returns the new filter (``value`` is None for a
        flag, ``takes_value=False``); without a parser the pair goes into
        :attr:`ProxyFilter.extra` as ``(key, value or "")``.
        """
        k = key.lower()
        if not k or self.separator in k or k.startswith("!"):
            raise ValueError(f"invalid label key {key!r}")
        (self._values if takes_value else self._flags)[k] = parser
        (self._flags if takes_value else self._values).pop(k, None)

    def parse(self, username: str) -> tuple[str, ProxyFilter]:
        """``(user, filter)``; ``ValueError`` naming the label for a refused username."""
        parts = username.split(self.separator)
        if len(parts) > self.max_labels + 1:
            raise ValueError(f"too many labels (more than {self.max_labels})")
        user = parts[0]
        if not user:
            raise ValueError("empty user name")
        if len(parts) == 1:
            return user, _EMPTY
        values: dict[str, list[str]] = {}
        flags: dict[str, bool] = {}
        session: str | None = None
        new_connection = False
        customs: list[tuple[LabelParser | None, str, str | None]] = []
        i, n = 1, len(parts)
        while i < n:
            raw = parts[i]
            i += 1
            key = raw.lower()
            try:
                if not key:
                    raise ValueError("empty label")
                if key in self._values or key in self._flags:
                    if key in self._values:
                        if i >= n:
                            raise ValueError(f"label {raw!r} needs a value")
                        value: str | None = parts[i]
                        i += 1
                        _check_value(raw, value or "")
                    else:
                        value = None
                    customs.append((self._values.get(key) or self._flags.get(key), key, value))
                elif key in _KEYS:
                    if i >= n:
                        raise ValueError(f"label {raw!r} needs a value")
                    value = parts[i]
                    i += 1
                    _check_value(raw, value)
                    v = normalize_asn(value) if key == "asn" else value.lower()
                    bucket = values.setdefault(key, [])
                    if v not in bucket:
                        bucket.append(v)
                elif key in _FLAGS or (key[:1] == "!" and key[1:] in _FLAGS):
                    name, on = (key[1:], False) if key[0] == "!" else (key, True)
                    if flags.get(name, on) != on and self.strict:
                        raise ValueError(f"label {raw!r} contradicts an earlier {name!r} label")
                    flags[name] = on
                elif key == SESSION_LABEL:
                    if i >= n:
                        raise ValueError(f"label {raw!r} needs a value")
                    value = parts[i]
                    i += 1
                    _check_value(raw, value)
                    if session is not None and session != value and self.strict:
                        raise ValueError(f"label {raw!r} given twice with different keys")
                    session = value
                elif key == NEW_CONNECTION_LABEL:
                    new_connection = True
                else:
                    raise ValueError(f"unknown label {raw!r}")
            except ValueError:
                if self.strict:
                    raise

        def vals(name: str) -> tuple[str, ...]:
            return tuple(values.get(name, ()))

        result = ProxyFilter(
            id=vals("id"),
            pool=vals("pool"),
            continent=vals("continent"),
            country=vals("country"),
            state=vals("state"),
            city=vals("city"),
            carrier=vals("carrier"),
            asn=vals("asn"),
            datacenter=flags.get("datacenter"),
            residential=flags.get("residential"),
            mobile=flags.get("mobile"),
            session=session,
            new_connection=new_connection,
        )
        for parser, key, value in customs:
            if parser is None:
                result = replace(result, extra=(*result.extra, (key, value or "")))
                continue
            try:
                result = parser(result, value)
            except ValueError as e:
                if self.strict:
                    raise ValueError(f"label {key!r}: {e}") from e
        return user, result


_EMPTY = ProxyFilter()


def format_username(user: str, proxy_filter: ProxyFilter, *, separator: str = "-") -> str:
    """The username that :class:`UsernameLabelParser` parses back to ``(user, proxy_filter)``.

    Handy on the client side: ``format_username("john", ProxyFilter(country=("us",)))``
    is ``"john-country-us"``. Custom (``extra``) labels are written as key/value pairs.
    """
    parts = [user]
    for name in FILTER_FIELDS:
        for value in getattr(proxy_filter, name):
            parts += [name, value]
    for name in FLAG_FIELDS:
        flag: bool | None = getattr(proxy_filter, name)
        if flag is not None:
            parts.append(name if flag else f"!{name}")
    if proxy_filter.session is not None:
        parts += [SESSION_LABEL, proxy_filter.session]
    if proxy_filter.new_connection:
        parts.append(NEW_CONNECTION_LABEL)
    for key, value in proxy_filter.extra:
        parts += [key, value]
    return separator.join(parts)
