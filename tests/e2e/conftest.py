"""Browser tests: the chat client (web/) in Debian's Chromium, driven by Playwright, against the real local
stack started once on free ports. test-artifacts/e2e/ (git-ignored) gets the stack's log, screenshots of
every run and of every open page of a test that failed."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local_stack.testing import StackProcess
from tests.support.records import table_client, table_items

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
JWT_SECRET = "e2e-local-only-secret-0123456789abcdef"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

pytestmark = pytest.mark.browser


def _unavailable(reason: str) -> None:
    """In CI a missing browser is a failure, elsewhere a skip with the reason."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def intercept(page: Any, hold: Callable[[dict[str, Any], Callable[[dict[str, Any]], None]], bool]) -> None:
    """The page's WebSocket frames pass through ``hold(frame, reply)``; a frame it returns True for never
    reaches the server (``reply(frame)`` answers the page as the server would)."""

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if not hold(json.loads(message), lambda frame: ws.send(json.dumps(frame))):
                server.send(message)

        ws.on_message(to_server)

    page.route_web_socket("**/*", route)


@dataclass
class Stack(StackProcess):
    """The kit's stack process, stopped as Ctrl-C stops `make dev`, with the @connections API and the
    connection table as an operator would use them."""

    jwt_secret: str = JWT_SECRET
    env: Mapping[str, str] = field(default_factory=lambda: {"STAGE": "dev"})
    log_path: Path | None = ARTIFACTS / "stack.log"
    stop_signal: int = signal.SIGINT

    def delete_connection(self, connection_id: str) -> int:
        url = f"{self.callback_url}/@connections/{connection_id}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=3) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return error.code

    def connection_ids(self, *, user_id: str, room_id: str | None = None, timeout: float = 10.0) -> list[str]:
        """Connection ids of a user, read from the stack's connection table (waits until there is one)."""
        deadline = time.monotonic() + timeout
        while True:
            client = table_client(self.dynamodb_endpoint, self.ready["region"])
            found = [
                item["connection_id"]["S"]
                for item in table_items(client, self.ready["table_name"])
                if item["user_id"]["S"] == user_id and room_id in (None, item["room_id"]["S"])
            ]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ARTIFACTS / "failures", ignore_errors=True)  # only this run's failures
    (ARTIFACTS / "failures").mkdir()
    return ARTIFACTS


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        _unavailable(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="package")
def stack(artifacts: Path) -> Iterator[Stack]:
    (artifacts / "stack.log").write_bytes(b"")
    with Stack() as stack:
        yield stack


# Package scope: Playwright's sync API keeps an asyncio loop running in the main thread while it is
# open, and later suites call asyncio.run().
@pytest.fixture(scope="package")
def browser(chromium_path: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _unavailable(f"Playwright for Python is not installed: {error}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


class Pages:
    """Opens pages (each in its own browser context, like separate people) and records what went wrong."""

    def __init__(self, browser: Any, stack: Stack) -> None:
        self.browser = browser
        self.stack = stack
        self.opened: list[tuple[str, Any]] = []
        self.problems: list[str] = []

    def open(
        self,
        label: str,
        *,
        width: int = 1280,
        height: int = 800,
        color_scheme: str = "light",
        config: dict[str, Any] | None = None,
    ) -> Any:
        """A new page on the client. ``config`` is merged into the stack's /config.json for this page."""
        context = self.browser.new_context(
            viewport={"width": width, "height": height}, color_scheme=color_scheme
        )
        context.set_default_timeout(15_000)
        page = context.new_page()
        page.on("pageerror", lambda error: self.problems.append(f"{label}: page error: {error}"))
        page.on(
            "dialog",
            lambda dialog: (self.problems.append(f"{label}: dialog {dialog.message!r}"), dialog.dismiss()),
        )
        page.on("console", lambda message: self._console(label, message))
        if config:
            page.route("**/config.json", lambda route: self._patch_config(route, config))
        page.goto(self.stack.web_url)
        page.wait_for_selector("body[data-ready=true]")
        self.opened.append((label, page))
        return page

    @staticmethod
    def _patch_config(route: Any, extra: dict[str, Any]) -> None:
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), **extra})

    def _console(self, label: str, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.problems.append(f"{label}: CSP: {message.text}")

    def close(self) -> None:
        for _, page in self.opened:
            page.context.close()


@pytest.fixture
def pages(browser: Any, stack: Stack, artifacts: Path, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(browser, stack)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for label, page in opened.opened:
            try:
                page.screenshot(path=str(artifacts / "failures" / f"{slug}-{label}.png"), full_page=True)
            except Exception as error:
                print(f"could not screenshot {label}: {error}")
    problems = list(opened.problems)
    opened.close()
    if report is not None and report.passed:
        assert not problems, "\n".join(problems)
