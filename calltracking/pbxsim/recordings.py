"""MixMonitor's files: `<monitor_dir>/<uniqueid>.wav`, 8000 Hz mono 16-bit PCM.

Rules (from the fixtures' "Recordings" table and the two WAV files):
- The file exists, header only (44 bytes), from the moment MixMonitor starts; audio is written
  only while the call is bridged, so unanswered and busy calls keep the 44-byte file.
- The file is finished a little after the channel's Hangup (MixMonitor closes late); it is
  replaced atomically, so a reader sees either the empty header or the whole recording.
- The audio is a 425 Hz tone with some noise, as long as the talk time (capped at an hour).
"""

from __future__ import annotations

import array
import math
import os
import random
import sys
import wave
from pathlib import Path

RATE = 8000
MAX_SECONDS = 3600.0


def _write(path: Path, frames: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(frames)
    os.replace(tmp, path)


def start(path: Path) -> None:
    """MixMonitor opened the file: an empty WAV (44-byte header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, b"")


def tone(seconds: float, seed: int = 0) -> bytes:
    """A tone with noise, shaped into "syllables" (bursts of 0.1-0.4 s with pauses), so a
    waveform of the recording looks like a conversation rather than a solid block."""
    count = int(min(max(seconds, 0.0), MAX_SECONDS) * RATE)
    rng = random.Random(seed)
    step = 2 * math.pi * 425 / RATE
    envelope = _syllables(count, rng)
    samples = array.array(
        "h",
        (
            int(envelope[i] * 9000 * math.sin(step * i) + rng.randint(-300, 300))
            for i in range(count)
        ),
    )
    if sys.byteorder == "big":  # WAV PCM is little-endian
        samples.byteswap()
    return samples.tobytes()


def _syllables(count: int, rng: random.Random) -> list[float]:
    envelope: list[float] = []
    while len(envelope) < count:
        burst = int(RATE * rng.uniform(0.1, 0.4))
        peak = rng.uniform(0.3, 1.0)
        envelope.extend(peak * math.sin(math.pi * i / burst) for i in range(burst))
        envelope.extend(0.0 for _ in range(int(RATE * rng.uniform(0.03, 0.25))))
    return envelope[:count]


def finish(path: Path, talk_s: float, seed: int = 0) -> None:
    """MixMonitor closed the file: the bridged audio, or nothing if the call was never bridged."""
    _write(path, tone(talk_s, seed) if talk_s > 0 else b"")
