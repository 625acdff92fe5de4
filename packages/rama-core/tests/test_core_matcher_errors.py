from __future__ import annotations

import pytest

from rama_core import (
    AllOf,
    Always,
    AnyOf,
    Context,
    Matcher,
    MissingExtension,
    Never,
    Not,
    RamaError,
    ServiceTimeout,
    error_chain,
    error_context,
    format_error_chain,
    matcher_fn,
)

even = matcher_fn(lambda ctx, n: n % 2 == 0)
positive = matcher_fn(lambda ctx, n: n > 0)


@pytest.mark.parametrize(
    ("matcher", "hits"),
    [
        (even, [-2, 0, 2]),
        (positive, [1, 2, 3]),
        (even & positive, [2]),
        (even | positive, [-2, 0, 1, 2, 3]),
        (~even, [-3, -1, 1, 3]),
        (~(even | positive), [-3, -1]),
        (AllOf(), list(range(-3, 4))),
        (AnyOf(), []),
        (Always(), list(range(-3, 4))),
        (Never(), []),
    ],
)
def test_matcher_algebra(matcher: Matcher[int], hits: list[int]) -> None:
    ctx = Context()
    assert [n for n in range(-3, 4) if matcher.matches(ctx, n)] == hits


def test_matchers_flatten_and_double_negation() -> None:
    m = (even & positive) & even
    assert isinstance(m, AllOf)
    assert len(m.matchers) == 3
    o = (even | positive) | even
    assert isinstance(o, AnyOf)
    assert len(o.matchers) == 3
    assert ~Not(even) is even
    assert "&" in repr(m)
    assert "|" in repr(o)


def test_matcher_short_circuits() -> None:
    seen: list[str] = []

    def probe(name: str, result: bool) -> Matcher[int]:
        def fn(ctx: Context, n: int) -> bool:
            seen.append(name)
            return result

        return matcher_fn(fn)

    assert not (probe("a", False) & probe("b", True)).matches(Context(), 0)
    assert (probe("c", True) | probe("d", True)).matches(Context(), 0)
    assert seen == ["a", "c"]


def test_matcher_can_read_context() -> None:
    class Flag:
        pass

    has_flag = matcher_fn(lambda ctx, req: ctx.contains(Flag))
    ctx = Context()
    assert not has_flag.matches(ctx, None)
    ctx.insert(Flag())
    assert has_flag.matches(ctx.fork(), None)


def test_base_matcher_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        Matcher[int]().matches(Context(), 1)


# -- errors ----------------------------------------------------------------------


def test_rama_error_context_messages_read_outermost_first() -> None:
    with pytest.raises(RamaError) as err:
        with error_context("serving request"):
            with error_context("connecting to example.com:443"):
                raise RamaError("connection refused")
    assert str(err.value) == "serving request: connecting to example.com:443: connection refused"
    assert err.value.contexts == ["connecting to example.com:443", "serving request"]


def test_error_context_keeps_foreign_types_and_adds_notes() -> None:
    with pytest.raises(ConnectionRefusedError) as err:
        with error_context("dialing upstream"):
            raise ConnectionRefusedError("refused")
    assert err.value.__notes__ == ["dialing upstream"]


def test_error_chain_and_format() -> None:
    try:
        try:
            raise OSError("socket closed")
        except OSError as exc:
            raise RamaError("read failed").add_context("proxying") from exc
    except RamaError as top:
        chain = list(error_chain(top))
        assert [type(e) for e in chain] == [RamaError, OSError]
        assert format_error_chain(top) == "proxying: read failed <- socket closed"


def test_error_chain_handles_cycles_and_implicit_context() -> None:
    a = ValueError("a")
    b = KeyError("b")
    a.__context__ = b
    b.__context__ = a
    assert len(list(error_chain(a))) == 2


def test_typed_errors() -> None:
    timeout = ServiceTimeout(2.5, what="connect")
    assert str(timeout) == "connect timed out after 2.5s"
    assert isinstance(timeout, TimeoutError)
    assert isinstance(timeout, RamaError)
    missing = MissingExtension(int)
    assert missing.key is int
    assert "builtins.int" in str(missing)
    assert str(RamaError()) == "RamaError"
