"""Model-based test: a tree of forked contexts behaves like dicts layered with ChainMap."""

from __future__ import annotations

from collections import ChainMap
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from rama_core import Context


class A:
    pass


class B:
    pass


class C:
    pass


KEYS = st.sampled_from([A, B, C])


class ContextTree(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        root = Context()
        self.nodes: list[tuple[Context, ChainMap[type, Any]]] = [(root, ChainMap())]

    @rule(parent=st.integers(min_value=0))
    def fork(self, parent: int) -> None:
        ctx, model = self.nodes[parent % len(self.nodes)]
        self.nodes.append((ctx.fork(), model.new_child()))

    @rule(node=st.integers(min_value=0), key=KEYS, value=st.integers())
    def insert(self, node: int, key: type, value: int) -> None:
        ctx, model = self.nodes[node % len(self.nodes)]
        expected_prev = model.maps[0].get(key)
        assert ctx.insert(value, key=key) == expected_prev
        model[key] = value

    @rule(node=st.integers(min_value=0), key=KEYS)
    def remove(self, node: int, key: type) -> None:
        ctx, model = self.nodes[node % len(self.nodes)]
        assert ctx.remove(key) == model.maps[0].pop(key, None)

    @invariant()
    def every_node_sees_its_chain(self) -> None:
        for ctx, model in self.nodes:
            for key in (A, B, C):
                assert ctx.get(key, "absent") == model.get(key, "absent")
                assert ctx.contains(key) == (key in model)
            assert ctx.extensions() == dict(model)


TestContextTree = ContextTree.TestCase
TestContextTree.settings = settings(max_examples=60, deadline=None)
