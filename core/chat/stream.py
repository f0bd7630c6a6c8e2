"""Streaming text safely: cut at the first stop string, and never emit text that might turn into one."""

from __future__ import annotations


class StopText:
    """Follows the decoded answer as it grows; feed() returns only text that is final."""

    def __init__(self, stops: list[str]):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0
        self.stopped = False

    def feed(self, text: str) -> str:
        """Take the whole answer so far; return the newly final part (held back: a stop string's possible start)."""
        if self.stopped:
            return ""
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = text[:cut], True
            return self._release(len(self.text))
        self.text = text
        safe = len(text) - self._held_back(text)
        while safe > self.sent and text[safe - 1] == "\ufffd":  # an incomplete UTF-8 sequence so far
            safe -= 1
        return self._release(safe)

    def finish(self) -> str:
        """Everything not yet released (the answer ended without a stop string)."""
        return self._release(len(self.text))

    def _held_back(self, text: str) -> int:
        hold = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        return hold

    def _release(self, upto: int) -> str:
        if upto <= self.sent:
            return ""
        out, self.sent = self.text[self.sent:upto], upto
        return out
