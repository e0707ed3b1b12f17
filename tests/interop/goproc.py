"""Drive a Go interop program over its JSON-lines protocol, from asyncio.

The programs under ``tests/interop/cmd/`` all speak the same protocol on their standard streams:

* stdin takes one JSON object per line, ``{"id": N, "cmd": "...", ...arguments}``;
* stdout prints one JSON object per line: an answer ``{"id": N, "ok": true, ...}`` or
  ``{"id": N, "ok": false, "error": "..."}`` for each request (in any order, since the program
  runs commands concurrently), or an unprompted event ``{"event": "...", ...}``; the first event
  is ``{"event": "ready", "peer_id": ..., "addrs": [...]}``;
* stderr carries free-form logs.

:class:`GoPeer` starts such a program, waits for ``ready``, matches answers to requests, queues
events, and keeps the tail of stderr for error messages. Nothing in it is specific to one
program: the binary and its arguments are parameters.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = [
    "DEFAULT_BINARY",
    "REPO_ROOT",
    "GoCommandError",
    "GoPeer",
    "GoPeerError",
    "GoProcessError",
    "JSONObject",
]

JSONObject = dict[str, Any]
EventPredicate = Callable[[JSONObject], bool]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BINARY = REPO_ROOT / "build" / "p2p-peer"

_log = logging.getLogger(__name__)


class GoPeerError(RuntimeError):
    """Base class of the errors raised by :class:`GoPeer`."""


class GoProcessError(GoPeerError):
    """The program failed to start, died, broke the protocol, or did not answer in time."""


class GoCommandError(GoPeerError):
    """The program answered a request with ``ok: false``."""

    def __init__(self, message: str, *, cmd: str, error: str, response: JSONObject) -> None:
        super().__init__(message)
        self.cmd = cmd
        self.error = error
        self.response = response


class _StderrTail:
    """The last ``limit`` bytes written to the program's stderr."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buf = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self._limit
        if excess > 0:
            del self._buf[:excess]
            self.dropped += excess

    def text(self) -> str:
        prefix = f"[... {self.dropped} earlier bytes dropped ...]\n" if self.dropped else ""
        return prefix + self._buf.decode("utf-8", errors="replace")


class GoPeer:
    """One running Go interop program.

    Use ``async with GoPeer(...) as peer`` or ``peer = await GoPeer(...).start()`` and
    ``await peer.close()``.

    :param binary: path of the program (default: ``build/p2p-peer`` at the repository root).
    :param args: command-line arguments.
    :param name: a label for logs and error messages (default: the binary's name).
    :param ready_timeout: seconds to wait for the ``ready`` event.
    :param request_timeout: default seconds :meth:`request` waits for an answer.
    :param stderr_limit: bytes of stderr kept for error messages.
    :param event_limit: events kept in :attr:`events` and in the history (the oldest are dropped).
    :param env: extra environment variables for the program.
    """

    def __init__(
        self,
        binary: str | os.PathLike[str] | None = None,
        args: Sequence[str] = (),
        *,
        name: str | None = None,
        ready_timeout: float = 30.0,
        request_timeout: float = 60.0,
        stderr_limit: int = 64 * 1024,
        event_limit: int = 100_000,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.binary = Path(binary) if binary is not None else DEFAULT_BINARY
        self.args = list(args)
        self.name = name or self.binary.name
        self.ready_timeout = ready_timeout
        self.request_timeout = request_timeout
        self._env = dict(env) if env is not None else None
        self._event_limit = event_limit
        self._stderr = _StderrTail(stderr_limit)
        self._proc: asyncio.subprocess.Process | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pending: dict[int, asyncio.Future[JSONObject]] = {}
        self._next_id = 0
        self._write_lock = asyncio.Lock()
        self._ready: JSONObject | None = None
        self._ready_future: asyncio.Future[JSONObject] | None = None
        self._failure: GoProcessError | None = None
        self._closing = False
        # Every unprompted event goes both to the queue (for consumers that iterate) and to the
        # history that wait_event searches; the two are independent.
        self.events: asyncio.Queue[JSONObject] = asyncio.Queue(maxsize=event_limit)
        self._history: collections.deque[tuple[int, JSONObject]] = collections.deque(maxlen=event_limit)
        self._claimed: set[int] = set()
        self._seq = 0
        self._new_event = asyncio.Condition()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the program and wait for its ``ready`` event."""
        if self._proc is not None:
            raise GoPeerError(f"{self.name}: already started")
        if not self.binary.is_file():
            raise GoProcessError(f"{self.name}: no program at {self.binary} (build it first)")
        env = None
        if self._env is not None:
            env = {**os.environ, **self._env}
        self._proc = await asyncio.create_subprocess_exec(
            str(self.binary),
            *self.args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=256 * 1024 * 1024,  # answers may carry large hex payloads
        )
        loop = asyncio.get_running_loop()
        self._ready_future = loop.create_future()
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"{self.name}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr"),
        ]
        try:
            async with asyncio.timeout(self.ready_timeout):
                self._ready = await self._ready_future
        except TimeoutError:
            await self._abort()
            raise GoProcessError(self._describe(f"no ready event within {self.ready_timeout:g} s")) from None
        except GoProcessError:
            await self._abort()
            raise
        return self

    async def close(self, timeout: float = 10.0) -> int | None:
        """Ask the program to quit, kill it if it has not exited within ``timeout``, and
        return its exit code. Safe to call more than once."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None and self._failure is None and not self._closing:
            self._closing = True
            with contextlib.suppress(GoPeerError, OSError):
                await self.request("quit", timeout=timeout)
        self._closing = True
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            _log.warning("%s: did not exit within %g s, killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self._finish_tasks()
        return proc.returncode

    async def kill(self) -> None:
        """Kill the program at once (to test what happens when a peer vanishes)."""
        self._closing = True
        await self._abort()

    async def __aenter__(self) -> Self:
        if self._proc is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _abort(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        await self._finish_tasks()

    async def _finish_tasks(self) -> None:
        # The readers end by themselves at EOF, which follows the process's exit.
        for task in self._tasks:
            try:
                async with asyncio.timeout(5):
                    await task
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- properties --------------------------------------------------------------------------

    @property
    def ready(self) -> JSONObject:
        """The ``ready`` event."""
        if self._ready is None:
            raise GoPeerError(f"{self.name}: not started")
        return self._ready

    @property
    def peer_id(self) -> str:
        return str(self.ready["peer_id"])

    @property
    def addrs(self) -> list[str]:
        return [str(a) for a in self.ready.get("addrs", [])]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._failure is None

    @property
    def stderr_text(self) -> str:
        """The tail of what the program wrote to stderr so far."""
        return self._stderr.text()

    @property
    def event_history(self) -> list[JSONObject]:
        """The unprompted events received so far (the oldest may have been dropped)."""
        return [ev for _, ev in self._history]

    # -- requests ----------------------------------------------------------------------------

    async def request(self, cmd: str, *, timeout: float | None = None, **args: Any) -> JSONObject:
        """Send ``{"id": N, "cmd": cmd, **args}`` and return the answer.

        Raises :class:`GoCommandError` when the answer has ``ok: false`` and
        :class:`GoProcessError` when the program is gone or does not answer within ``timeout``
        seconds (default: ``request_timeout``). ``timeout`` is this side's wait only; it is not
        sent to the program.
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise GoPeerError(f"{self.name}: not started")
        if self._failure is not None:
            raise self._failure
        if "id" in args or "cmd" in args:
            raise ValueError("'id' and 'cmd' are reserved")
        self._next_id += 1
        req_id = self._next_id
        line = json.dumps({"id": req_id, "cmd": cmd, **args}, separators=(",", ":")) + "\n"
        future: asyncio.Future[JSONObject] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        wait = self.request_timeout if timeout is None else timeout
        try:
            async with self._write_lock:
                try:
                    proc.stdin.write(line.encode())
                    await proc.stdin.drain()
                except (ConnectionError, RuntimeError) as e:
                    raise GoProcessError(self._describe(f"cannot send {cmd!r}: {e}")) from e
            try:
                async with asyncio.timeout(wait):
                    response = await future
            except TimeoutError:
                raise GoProcessError(self._describe(f"no answer to {cmd!r} within {wait:g} s")) from None
        finally:
            self._pending.pop(req_id, None)
        if response.get("ok") is not True:
            error = str(response.get("error", "(no error text)"))
            raise GoCommandError(
                self._describe(f"{cmd!r} failed: {error}"), cmd=cmd, error=error, response=response
            )
        return response

    # -- events ------------------------------------------------------------------------------

    async def wait_state(self, peer_id: object, state: str = "Established", timeout: float = 10.0) -> None:
        """Wait for Go's connection with ``peer_id`` (a PeerID or its text) to reach ``state``."""
        peer = str(peer_id)
        await self.wait_event("state", lambda e: e["peer_id"] == peer and e["state"] == state, timeout)

    async def wait_event(
        self,
        name: str,
        predicate: EventPredicate | None = None,
        timeout: float = 10.0,
    ) -> JSONObject:
        """Return the oldest not yet claimed event named ``name`` (and matching ``predicate``),
        waiting up to ``timeout`` seconds for it to arrive. Each event is returned by at most
        one ``wait_event`` call; events that already arrived count."""

        def find() -> JSONObject | None:
            for seq, ev in self._history:
                if seq in self._claimed or ev.get("event") != name:
                    continue
                if predicate is None or predicate(ev):
                    self._claimed.add(seq)
                    return ev
            return None

        try:
            async with asyncio.timeout(timeout), self._new_event:
                while True:
                    found = find()
                    if found is not None:
                        return found
                    if self._failure is not None:
                        raise GoProcessError(
                            self._describe(f"exited while waiting for event {name!r}")
                        ) from self._failure
                    await self._new_event.wait()
        except TimeoutError:
            recent = [ev.get("event") for _, ev in list(self._history)[-20:]]
            raise GoProcessError(
                self._describe(f"no event {name!r} within {timeout:g} s (recent events: {recent})")
            ) from None

    def clear_events(self) -> None:
        """Forget all events received so far (history and queue)."""
        self._history.clear()
        self._claimed.clear()
        while not self.events.empty():
            self.events.get_nowait()

    # -- readers -----------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        reason = "exited"
        try:
            while True:
                try:
                    raw = await stdout.readline()
                except ValueError as e:  # a line over the limit
                    reason = f"printed an over-long line ({e})"
                    break
                if not raw:
                    break
                text = raw.decode("utf-8", errors="replace").strip()
                if not text:
                    continue
                try:
                    msg = json.loads(text)
                except json.JSONDecodeError:
                    self._stderr.feed(f"[goproc: non-JSON stdout line: {text[:500]}]\n".encode())
                    continue
                if not isinstance(msg, dict):
                    self._stderr.feed(f"[goproc: non-object stdout line: {text[:500]}]\n".encode())
                    continue
                await self._dispatch(msg)
        finally:
            await self._fail(reason)

    async def _dispatch(self, msg: JSONObject) -> None:
        if "event" in msg:
            if msg["event"] == "ready" and self._ready_future is not None and not self._ready_future.done():
                self._ready_future.set_result(msg)
            if self.events.full():
                self.events.get_nowait()
            self.events.put_nowait(msg)
            self._seq += 1
            if len(self._history) == self._history.maxlen:
                self._claimed.discard(self._history[0][0])
            self._history.append((self._seq, msg))
            async with self._new_event:
                self._new_event.notify_all()
            return
        req_id = msg.get("id")
        future = self._pending.get(req_id) if isinstance(req_id, int) else None
        if future is None:
            self._stderr.feed(f"[goproc: answer to no pending request: {json.dumps(msg)[:500]}]\n".encode())
            return
        if not future.done():
            future.set_result(msg)

    async def _read_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        stderr = self._proc.stderr
        while True:
            chunk = await stderr.read(65536)
            if not chunk:
                return
            self._stderr.feed(chunk)
            if _log.isEnabledFor(logging.DEBUG):
                _log.debug("%s stderr: %s", self.name, chunk.decode("utf-8", errors="replace").rstrip())

    async def _fail(self, reason: str) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            # stdout closed: the process is exiting; give it a moment to report its status.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await proc.wait()
        # Let the stderr reader catch up, so that the error message has the program's last words.
        stderr_task = next((t for t in self._tasks if t.get_name().endswith("-stderr")), None)
        if stderr_task is not None and not stderr_task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await asyncio.shield(stderr_task)
        code = proc.returncode if proc is not None else None
        self._failure = GoProcessError(self._describe(f"{reason} (exit code {code})"))
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._failure)
        if self._ready_future is not None and not self._ready_future.done():
            self._ready_future.set_exception(self._failure)
        async with self._new_event:
            self._new_event.notify_all()

    def _describe(self, what: str) -> str:
        tail = self._stderr.text().rstrip()
        pid = self.pid
        head = f"{self.name} (pid {pid}): {what}"
        if not tail:
            return head + "\n--- stderr: (empty) ---"
        return f"{head}\n--- stderr (tail) ---\n{tail}\n--- end of stderr ---"
