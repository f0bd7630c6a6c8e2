"""Follow a run from disk: replay its events file into a RunHistory, then pick up what is appended."""

from __future__ import annotations

import os
from pathlib import Path

from tunedeck.core.stream.events import Event, parse_event
from tunedeck.core.stream.history import RunHistory

LOG_TAIL_BYTES = 64 * 1024


class RunWatcher:
    """Replays an events file once, then each poll() returns (and records) the events added since."""

    def __init__(self, events_path: str | Path):
        self.path = Path(events_path)
        self.history = RunHistory()
        self._offset = 0
        self._partial = b""
        self._replayed = False

    def replay(self) -> RunHistory:
        """Read every complete event written so far (the partial last line waits for poll())."""
        data = self._read_new()
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        self.history.load(data[:end])
        self._replayed = True
        return self.history

    def poll(self) -> list[Event]:
        if not self._replayed:
            self.replay()
            return []
        data = self._partial + self._read_new()
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        events = []
        for raw in data[:end].split(b"\n"):
            event = parse_event(raw.decode("utf-8", errors="replace"))
            if event is not None:
                self.history.add(event)
                events.append(event)
        return events

    def _read_new(self) -> bytes:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return b""
        self._offset += len(data)
        return data


class LogTail:
    """The end of a growing text file (worker.log): first the last lines, then each poll's new lines."""

    def __init__(self, path: str | Path, first_bytes: int = LOG_TAIL_BYTES):
        self.path = Path(path)
        self._first_bytes = first_bytes
        self._offset: int | None = None
        self._partial = b""

    def poll(self) -> list[str]:
        try:
            with open(self.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if self._offset is None or size < self._offset:  # first read, or the file was replaced
                    self._offset = max(0, size - self._first_bytes)
                    self._partial = b""
                    skip_first = self._offset > 0
                else:
                    skip_first = False
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._partial + data
        end = data.rfind(b"\n") + 1
        self._partial = data[end:]
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        return lines[1:] if skip_first else lines
