"""The local stack reads functions without a route (fanout, publish): loaded and invokable, never routed."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from local_stack.cli import _read_event
from local_stack.config import REPO_ROOT, StackConfig
from local_stack.stack import check_route_keys
from local_stack.terraform import load_model


def test_functions_without_a_route_are_read_with_a_null_route_key() -> None:
    model = load_model([REPO_ROOT / "terraform"])
    unrouted = {name: spec for name, spec in model.functions.items() if spec.route_key is None}
    assert set(unrouted) == {"fanout", "publish"}
    assert unrouted["fanout"].timeout == 60
    assert "FANOUT_QUEUE_URL" in unrouted["fanout"].environment
    check_route_keys(model)  # two functions without a route do not share one


def test_two_routed_functions_on_one_route_still_clash() -> None:
    model = load_model([REPO_ROOT / "terraform"])
    model.functions["publish"] = dataclasses.replace(model.functions["publish"], route_key="sendMessage")
    with pytest.raises(Exception, match="same route_key 'sendMessage'"):
        check_route_keys(model)


def test_invoking_a_function_without_a_route_needs_an_event() -> None:
    args = argparse.Namespace(function="fanout", event=None)
    with pytest.raises(ValueError, match=r"fanout has no route.*--event"):
        _read_event(args, {"fanout": None, "send_message": "sendMessage"}, StackConfig.from_env())
