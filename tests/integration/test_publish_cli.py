"""``python -m local_stack publish`` without a stack: its event, and its refusals (exit status 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_stack.cli import main, publish_event


def test_the_event_names_the_room_or_the_user() -> None:
    assert publish_event(message="hi", room="general") == {"room_id": "general", "message": "hi"}
    assert publish_event(message="hi", to_user="bob", user_id="ci", name="CI") == {
        "to_user_id": "bob",
        "message": "hi",
        "user_id": "ci",
        "name": "CI",
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
