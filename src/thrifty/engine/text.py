"""Token pieces to text, with stop strings found across token boundaries.

Text is released as soon as it can no longer turn into a stop string, so a stream never
shows the client part of a stop sequence that later matches.
"""

from __future__ import annotations

import codecs


class TextStream:
    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self._sent = 0
        self.stopped = False

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that is now safe to send."""
        if self.stopped:
            return ""
        self.text += self._decoder.decode(piece)
        if self.stop:
            hit = self._find_stop()
            if hit is not None:
                self.text = self.text[:hit]
                self.stopped = True
                return self._release(hit)
            return self._release(len(self.text) - self._held_back())
        return self._release(len(self.text))

    def flush(self) -> str:
        """The rest of the text, when the sequence ends for another reason than a stop."""
        if not self.stopped:
            self.text += self._decoder.decode(b"", final=True)
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        if end <= self._sent:
            return ""
        out = self.text[self._sent : end]
        self._sent = end
        return out

    def _find_stop(self) -> int | None:
        longest = max(len(s) for s in self.stop)
        start = max(0, self._sent - longest)
        hits = [i for s in self.stop if (i := self.text.find(s, start)) >= 0]
        return min(hits) if hits else None

    def _held_back(self) -> int:
        """Length of the longest tail of the text that begins some stop string."""
        best = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(self.text)), best, -1):
                if s.startswith(self.text[-n:]):
                    best = n
                    break
        return best
