"""Text stop sequences (the request's `stop`): the answer's text is cut where the first one begins.

Text arrives in deltas, and a stop may span several, so a delta's tail that could still be the start of a stop
is held back until the next delta tells:

    push("Hello wo")  -> "Hello wo"        stops ["\\n\\nQ:"]: nothing held
    push("rld\\n")     -> "rld"             "\\n" might open "\\n\\nQ:": held
    push("\\nQ: next") -> "", stopped       "\\n\\nQ:" found: the text ends before it
    flush()           -> the held tail, when the answer ends without a stop
"""

from __future__ import annotations

from collections.abc import Sequence


class StopText:
    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.held = ""  # text not sent yet: it may be the start of a stop
        self.stopped = False

    def push(self, delta: str) -> str:
        """The part of `delta` (and of the held text) that is safe to send; sets `stopped` at a stop."""
        if self.stopped or not self.stops:
            return "" if self.stopped else delta
        text = self.held + delta
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped, self.held = True, ""
            return text[:cut]
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self.held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        """The held text, once the answer has ended without a stop."""
        out, self.held = ("" if self.stopped else self.held), ""
        return out
