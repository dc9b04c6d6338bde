"""The last step of a render: the final video gets its sound and subtitles.

add_sound mixes the video's own (provider) audio, the narration and the music, normalises
the mix to broadcast loudness, and writes a new MP4: the picture stream-copied (or re-encoded
with the subtitles drawn in), an AAC 48 kHz stereo track and a mov_text subtitle track.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cues import Cue

TARGET_LUFS = -14.0  # integrated loudness of the final mix (streaming platforms' norm)
MAX_TRUE_PEAK_DBTP = -1.0


@dataclass(frozen=True)
class SoundOptions:
    music: Path | None = None
    burn_subtitles: bool = False
    target_lufs: float = TARGET_LUFS
    max_true_peak_dbtp: float = MAX_TRUE_PEAK_DBTP
    music_level_db: float = -18.0  # the bed under nothing, relative to the music's own loudness
    duck_db: float = -12.0  # how far the music dips under narration
    duck_attack_s: float = 0.15
    duck_release_s: float = 0.4
    fade_in_s: float = 1.0
    fade_out_s: float = 2.0


@dataclass(frozen=True)
class SoundStats:
    loudness_lufs: float  # measured on the final mix
    true_peak_dbtp: float
    duration_s: float
    narration_s: float
    music_s: float  # the music file's own length
    step_s: dict[str, float]  # seconds spent per step: mix, measure, encode, mux, burn


def check_music(path: Path) -> None:
    raise NotImplementedError


def add_sound(video: Path, out: Path, *, narration: Path | None, cues: Sequence[Cue], options: SoundOptions) -> "SoundStats":
    raise NotImplementedError
