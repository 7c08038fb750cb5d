"""Native decoder calls made safe: FFmpeg's messages captured per call, and a child process that can be killed.

decord runs FFmpeg in-process. FFmpeg prints its diagnostics ("moov atom not found", "Invalid data
found when processing input") straight to file descriptor 2, where they interleave with progress bars,
while decord raises an exception that says little more than "Error reading <file>". And a malformed
file (or a stalled network mount) can make a native call block forever, which no Python timeout can
interrupt. This module gives the two remedies, used by probing (`pipeline.data.video`) and decoding
(`pipeline.data.decode`):

- `captured_stderr()` points fd 2 at a temporary file for the duration of one call, so the decoder's
  chatter never reaches the terminal, and `ffmpeg_reason()` turns what was captured into FFmpeg's own
  one-line reason for the manifest's `error` column.
- `IsolatedWorker` runs calls in one long-lived child process (spawned, so it shares no threads or
  locks with the caller) and waits at most `timeout_s` for each: a call that does not return is
  abandoned, the child killed with SIGKILL (a blocked native call ignores anything gentler) and a new
  one started for the next call.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d5c2a3e700] moov atom not found": FFmpeg's component prefix.
_FFMPEG_PREFIX = re.compile(r"^\[[^\]]+ @ (0x)?[0-9a-fA-F]+\]\s*")
# "[07:26:01] /github/workspace/src/video/video_reader.cc:83: ERROR opening: cut.mp4, Invalid data ...":
# decord's own log prefix (time, C++ source location) and the file name it repeats.
_DECORD_PREFIX = re.compile(r"^\[\d\d:\d\d:\d\d\]\s+\S+:\d+:\s*(ERROR\s+)?")
_DECORD_OPENING = re.compile(r"^opening:\s.*?,\s+")
# Most of FFmpeg's messages are one line; a reason longer than this is cut (the manifest stays readable).
MAX_REASON_CHARS = 300


@dataclass
class Captured:
    """What a `captured_stderr()` block wrote to fd 2 (filled in when the block ends)."""

    text: str = ""


@contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Redirect file descriptor 2 (C libraries included) into a temporary file for the block.

    Everything written to stderr in the block, by any thread of this process, goes to the capture,
    not to the terminal; `Captured.text` holds it afterwards.
    """
    captured = Captured()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", errors="replace")


def ffmpeg_reason(text: str) -> str | None:
    """FFmpeg's (and decord's) own messages in `text`, one line, without prefixes or repeats; None if none."""
    reasons: list[str] = []
    for line in text.splitlines():
        line = _DECORD_OPENING.sub("", _DECORD_PREFIX.sub("", _FFMPEG_PREFIX.sub("", line.strip()))).strip()
        if line and line not in reasons:
            reasons.append(line)
    if not reasons:
        return None
    reason = "; ".join(reasons)
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


class CallTimeout(Exception):
    """The call did not return within the time limit; the child running it was killed."""


class WorkerCrashed(Exception):
    """The child process died during the call (e.g. the decoder crashed with a signal)."""


# How long a fresh worker may take to start and unpickle a call (outside the per-call timeout).
STARTUP_TIMEOUT_S = 300.0


def _serve(conn: Any) -> None:
    """The child's loop: run `(func, args)` requests until told to stop (None) or the pipe closes."""
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        if request is None:
            return
        func, args = request
        conn.send(("started", None))  # unpickled (its module imported): the caller's clock starts now
        try:
            reply = ("ok", func(*args))
        except Exception as err:  # noqa: BLE001 - the caller gets the error as text, the child lives on
            reply = ("error", f"{type(err).__name__}: {' '.join(str(err).split())}")
        conn.send(reply)


class IsolatedWorker:
    """Runs picklable calls in a child process, waiting at most `timeout_s` seconds for each.

        with IsolatedWorker(timeout_s=60) as worker:
            result = worker.call(probe_video, path)   # CallTimeout / WorkerCrashed on failure

    `timeout_s=None` waits forever. The child is started on first use and again after a timeout or a
    crash; `close()` (or leaving the `with` block) stops it. The `timeout_s` clock starts when the child
    has received the call: starting a process and importing the call's module (decord, torch) can take
    seconds on a busy machine and is not the file's fault; that part waits up to `STARTUP_TIMEOUT_S`.
    """

    def __init__(self, timeout_s: float | None):
        self.timeout_s = timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Any = None

    def __enter__(self) -> IsolatedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child,), daemon=True, name="cra-isolated-worker")
        self._process.start()
        child.close()
        self._conn = parent

    def _kill(self) -> int | None:
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join()
        return process.exitcode

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """`func(*args)` in the child. Raises CallTimeout, WorkerCrashed, or RuntimeError (func raised)."""
        if self._process is None:
            self._start()
        self._conn.send((func, args))
        if not self._conn.poll(STARTUP_TIMEOUT_S):
            self._kill()
            raise WorkerCrashed(f"the worker process did not start within {STARTUP_TIMEOUT_S:g} s")
        try:
            kind, _ = self._conn.recv()
        except (EOFError, ConnectionError):
            code = self._kill()
            raise WorkerCrashed(f"the worker process died while starting (exit status {code})") from None
        assert kind == "started", kind
        if not self._conn.poll(self.timeout_s):
            self._kill()
            raise CallTimeout(f"no answer within {self.timeout_s:g} s; the worker was killed")
        try:
            kind, value = self._conn.recv()
        except (EOFError, ConnectionError):
            code = self._kill()
            how = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
            raise WorkerCrashed(f"the decoder process died ({how})") from None
        if kind == "error":
            raise RuntimeError(value)
        return value

    def close(self) -> None:
        if self._process is not None and self._conn is not None:
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=5)
        self._kill()
