"""Drive a headless Chromium from a test with the Chrome DevTools protocol over ``--remote-debugging-pipe``.

Standard library only (no selenium, no driver, no websocket library): Chromium reads NUL-terminated JSON
commands on file descriptor 3 and writes replies and events on 4 (placed there by ``posix_spawn``). :func:`find_chromium` gives the browser
binary or None, so a test can skip with a reason when no browser is installed.
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from typing import Any

# Without these Chromium reaches for the network (updates, sync, QUIC probes) and stalls on a closed one.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars"]
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The Chromium (or Chrome) binary: ``$POLYNER_CHROMIUM`` or the first candidate on PATH; None if none."""
    given = os.environ.get("POLYNER_CHROMIUM")
    if given:
        return given if os.access(given, os.X_OK) else None
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def _above_nine(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """A protocol command failed, or the browser went away."""


class Chromium:
    """One headless browser with one page; ``call`` sends a protocol command to the page and waits for its reply."""

    def __init__(self, binary: str, width: int = 1000, height: int = 800, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="polyner-chromium-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()
        # the child's ends move above 9 first, so that placing them at 3 and 4 cannot overwrite one with the other
        commands_read, replies_write = (_above_nine(fd) for fd in (commands_read, replies_write))
        argv = [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                "--remote-debugging-pipe", "about:blank"]
        self.pid = os.posix_spawn(binary, argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, commands_read, 3), (os.POSIX_SPAWN_DUP2, replies_write, 4),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        os.close(commands_read)
        os.close(replies_write)
        self._next_id = 0
        self._replies_by_id: dict[int, dict] = {}
        self.events: list[dict] = []
        self._condition = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="chromium-pipe", daemon=True)
        self._reader.start()
        target = self._send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._replies, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._condition:
                    self._closed = True
                    self._condition.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._condition:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._replies_by_id[message["id"]] = message
                    else:
                        self.events.append(message)
                self._condition.notify_all()

    _closed = False

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        with self._condition:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._condition:
            while ident not in self._replies_by_id:
                if self._closed or time.monotonic() > deadline:
                    raise BrowserError(f"no reply to {method} ({'browser closed' if self._closed else 'timeout'})")
                self._condition.wait(0.1)
            reply = self._replies_by_id.pop(ident)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def call(self, method: str, params: dict | None = None) -> dict:
        """A protocol command on the page (``Page.navigate``, ``Input.insertText``, ...)."""
        return self._send(method, params, self.session)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); a page exception fails."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True, "userGesture": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:60]}...: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll a JavaScript expression until it is truthy; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout:g} s: {expression}")
            time.sleep(0.05)

    def open(self, url: str) -> None:
        """Navigate and wait until the document has loaded."""
        self.call("Page.navigate", {"url": url})
        self.wait_for("document.readyState === 'complete' && location.href !== 'about:blank'")

    def press(self, key: str, code: str, key_code: int, modifiers: int = 0, text: str = "") -> None:
        """One key press (``modifiers``: 2 = Ctrl); ``text`` for keys that type."""
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": key_code,
                      "modifiers": modifiers}
            if text and kind == "keyDown":
                params["text"] = text
            self.call("Input.dispatchKeyEvent", params)

    def screenshot(self) -> bytes:
        """A PNG of the whole page."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
                                ["data"])

    def problems(self) -> list[str]:
        """Console errors, log errors (a Content-Security-Policy refusal, a failed load) and uncaught exceptions
        seen so far."""
        found = []
        for event in self.events:
            if event.get("method") == "Runtime.exceptionThrown":
                found.append(event["params"]["exceptionDetails"].get("text", "exception"))
            elif event.get("method") == "Runtime.consoleAPICalled" and event["params"]["type"] == "error":
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
            elif event.get("method") == "Log.entryAdded" and event["params"]["entry"]["level"] == "error":
                found.append(event["params"]["entry"]["text"])  # CSP refusals, failed loads
        return found

    def close(self) -> None:
        try:
            self._send("Browser.close")
        except (BrowserError, OSError):
            pass
        deadline = time.monotonic() + 10
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                break
            time.sleep(0.05)
        for fd in (self._commands, self._replies):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
