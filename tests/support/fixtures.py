"""Where the recorded Asterisk transcripts live in the repo (copied from shared/fixtures)."""

from pathlib import Path

ASTERISK = Path(__file__).resolve().parent.parent / "fixtures" / "asterisk"
