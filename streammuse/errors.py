"""The one exception family that user-caused problems raise.

The CLI catches :class:`StreamMuseError` once, at the command boundary, prints its
message on one line and exits with code 2. Anything else is our bug and should crash
loudly.
"""

from __future__ import annotations


class StreamMuseError(Exception):
    """A problem the user can fix: bad file, bad flag, unreachable server."""


class BadMidiError(StreamMuseError):
    """A MIDI file that cannot be read or yields no usable notes."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
