"""Following growing files: one tail reads their new whole lines; events, log text and a run's history sit on it."""

from __future__ import annotations

import os
from pathlib import Path

from tunedeck.core.stream.events import Event, parse_line
from tunedeck.core.stream.history import RunHistory

LOG_TAIL_BYTES = 64 * 1024


class FileTail:
    """A growing file read in whole lines: each read() returns what was completed since the last one.

    A partial last line waits for the next read. `back` says where to start the first time the file is seen:
    None from its beginning, 0 from its end as it is now (only what is written from now on), N from N bytes
    before its end (from the first whole line in them). A file replaced or truncated under the tail is read
    again as a new file: from its beginning, or its last N bytes; `restarts` counts those.
    """

    def __init__(self, path: str | Path, back: int | None = None):
        self.path = Path(path)
        self.back = back
        self.restarts = 0
        self._identity: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._align = False  # the offset may be inside a line: skip to the next line start
        if back == 0:
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                return  # everything written once it appears is new
            self._identity = (stat.st_dev, stat.st_ino)
            self._offset = stat.st_size
            self._align = self._offset > 0

    def read(self) -> bytes:
        """The complete lines written since the last read, each ending in a newline; b"" when there are none."""
        try:
            with open(self.path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if (stat.st_dev, stat.st_ino) != self._identity or stat.st_size < self._offset:
                    self._start(stat.st_size, again=self._identity is not None)
                    self._identity = (stat.st_dev, stat.st_ino)
                data = self._read_from(handle)
        except FileNotFoundError:
            return b""
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        return data[:end]

    def poll(self) -> list[bytes]:
        """The complete lines written since the last poll, without their newlines."""
        return self.read().split(b"\n")[:-1]

    def _start(self, size: int, again: bool) -> None:
        self._offset = max(0, size - self.back) if self.back else 0
        self._align = self._offset > 0
        self._partial = b""
        self.restarts += again

    def _read_from(self, handle) -> bytes:
        if not self._align:
            handle.seek(self._offset)
            data = handle.read()
            self._offset += len(data)
            return data
        handle.seek(self._offset - 1)  # the byte before: a newline there means the offset starts a line
        data = handle.read()
        if not data:
            return b""
        self._offset += len(data) - 1
        cut = data.find(b"\n") + 1
        if not cut:
            return b""  # still inside the first, partial line
        self._align = False
        return data[cut:]


class EventTail:
    """An events file followed: each poll() returns the events completed since the last one."""

    def __init__(self, path: str | Path, back: int | None = None):
        self.lines = FileTail(path, back)
        self.path = self.lines.path

    def poll(self) -> list[Event]:
        return [event for line in self.lines.poll() for event in parse_line(line)]


class LogTail:
    """A growing text file (worker.log): first its last lines, then each poll's new lines."""

    def __init__(self, path: str | Path, last_bytes: int = LOG_TAIL_BYTES):
        self.lines = FileTail(path, back=last_bytes)
        self.path = self.lines.path

    def poll(self) -> list[str]:
        return self.lines.read().decode("utf-8", errors="replace").splitlines()


class RunTail:
    """A run's events file as a RunHistory: replay() loads what is written so far in one go (the history's fast
    whole-file load), then each poll() adds and returns the events appended since."""

    def __init__(self, events_path: str | Path):
        self.lines = FileTail(events_path)
        self.path = self.lines.path
        self.history = RunHistory()
        self._replayed = False

    def replay(self) -> RunHistory:
        """Every complete event written so far (the partial last line waits for poll())."""
        self.history.load(self.lines.read())
        self._replayed = True
        return self.history

    def poll(self) -> list[Event]:
        if not self._replayed:
            self.replay()
            return []
        restarts = self.lines.restarts
        data = self.lines.read()
        if self.lines.restarts != restarts:  # another file under the same name: another history
            self.history = RunHistory()
        events = [event for line in data.split(b"\n") for event in parse_line(line)]
        for event in events:
            self.history.add(event)
        return events
