"""The seed article's JavaScript client, run unchanged in Chromium against the local stack.

Only its placeholders are filled in (the wss:// host becomes the local ws:// URL, the token a real one),
and its last line, ``sendMessage("Hello, World!")``, runs after ``onopen``: called before the socket is
open, as the article writes it, a browser throws InvalidStateError.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import Stack

SEED_CLIENT = """
// WebSocket接続
const token = "%(token)s";
const roomId = "room-123";
const userId = "user-456";

const ws = new WebSocket(`%(ws_url)s?token=${token}&room_id=${roomId}&user_id=${userId}`);

ws.onopen = function(event) {
  console.log('WebSocket connection established');
};

ws.onmessage = function(event) {
  const message = JSON.parse(event.data);
  console.log('Received message:', message);
};

ws.onerror = function(error) {
  console.error('WebSocket error:', error);
};

// メッセージ送信
function sendMessage(message) {
  const data = {
    action: "sendMessage",
    room_id: roomId,
    message: message
  };
  ws.send(JSON.stringify(data));
}
"""


def test_seed_article_client_works_unchanged(browser: Any, stack: Stack) -> None:
    # bypass_csp: the snippet is injected as an inline script into the client's page, whose CSP forbids them.
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        # Run from a page the stack serves: Chromium's local-network-access checks block pages that are
        # not (even about:blank, or a route-fulfilled page) from opening sockets to 127.0.0.1.
        page.goto(stack.web_url)
        script = SEED_CLIENT % {"token": stack.token("user-456"), "ws_url": stack.ws_url}
        with page.expect_console_message(lambda msg: msg.text == "WebSocket connection established"):
            page.add_script_tag(content=script)
        with page.expect_console_message(lambda msg: msg.text.startswith("Received message:")) as info:
            page.evaluate('sendMessage("Hello, World!")')
        received = info.value.args[1].json_value()
        assert received["action"] == "message"
        assert received["room_id"] == "room-123"
        assert received["user_id"] == "user-456"
        assert received["message"] == "Hello, World!"
        assert received["message_id"] and received["timestamp"].endswith("Z")
        assert errors == []
    finally:
        context.close()
