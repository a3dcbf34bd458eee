"""``python -m local_stack publish``: its event, its refusals (exit status 2), and its exit status for the
function's answer in a throwaway stack (0 for ``{"ok": true}``, 1 when the function refuses)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local_stack.cli import main, publish_event


def test_the_event_names_the_room_or_the_user() -> None:
    assert publish_event(message="hi", room="general") == {"room_id": "general", "message": "hi"}
    assert publish_event(message="hi", to_user="bob", user_id="ci", name="CI", client_msg_id="c-1") == {
        "to_user_id": "bob",
        "message": "hi",
        "user_id": "ci",
        "name": "CI",
        "client_msg_id": "c-1",
    }
    with pytest.raises(ValueError, match="exactly one"):
        publish_event(message="hi", room="general", to_user="bob")


def test_without_a_running_stack_it_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_STACK_STATE_DIR", str(tmp_path))
    assert main(["publish", "--room", "general", "--message", "hi", "--ws-port", "39999"]) == 2
    assert "no running `make dev` on WS_PORT 39999" in capsys.readouterr().err


def test_room_and_user_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["publish", "--room", "r", "--to-user", "u", "--message", "hi"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_a_refused_publish_exits_1_and_an_accepted_one_0(capsys: pytest.CaptureFixture[str]) -> None:
    # --client-msg-id reaches the function: an invalid one is refused, naming the field
    refused = ["publish", "--room", "general", "--message", "hi", "--client-msg-id", "not valid!"]
    assert main([*refused, "--self-contained"]) == 1
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is False and answer["error"]["code"] == "invalid_request"
    assert "client_msg_id" in answer["error"]["message"]

    accepted = ["publish", "--room", "general", "--message", "hi", "--client-msg-id", "deploy-41"]
    assert main([*accepted, "--self-contained"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ok"] is True and answer["message_id"]
