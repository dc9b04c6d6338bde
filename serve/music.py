"""Music sent to the API: checked by decoding, like reference images (serve/images.py).

A music file is accepted only if one of a short list of audio demuxers (forced, one after
another: FFmpeg's format probing is never let loose on uploaded bytes, since demuxers such
as HLS or concat would open other files and URLs named inside them) opens it and PyAV
decodes audio samples from its first packets, and it is at most `max_bytes`. The name and
the declared content type are never trusted.

A CheckedMusic has `data` and `filename` (`<sha256>.<ext>`), so it is staged and stored
content-addressed beside reference images by the same StagedImages / InputImages.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from .errors import ApiError

MAX_MUSIC_BYTES = 25 * 1024 * 1024  # ten minutes of 320 kb/s MP3
MIN_SAMPLES = 1024  # one AAC frame: the first packets really decode to sound
# (FFmpeg demuxer name, extension), most specific first: MP3's demuxer resyncs on any byte
# pattern that looks like a frame header, so it is tried last.
DEMUXERS = (
    ("mov", "m4a"), ("ogg", "ogg"), ("flac", "flac"), ("wav", "wav"), ("matroska", "mka"), ("aac", "aac"), ("mp3", "mp3"),
)
FIELD = "music"  # the multipart field a music file is sent in


@dataclass(frozen=True)
class CheckedMusic:
    data: bytes
    extension: str
    codec: str
    sample_rate: int
    channels: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def filename(self) -> str:
        return f"{self.sha256}.{self.extension}"


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "music_too_large", f"the music file is larger than {max_bytes // (1024 * 1024)} MB; "
                                            "send a shorter or more compressed audio file")


def unsupported() -> ApiError:
    return ApiError(415, "unsupported_music", "the music file could not be decoded as audio (M4A/AAC, MP3, Ogg, "
                                              "FLAC, WAV or Matroska audio); send one of those")


def check_music_bytes(data: bytes, max_bytes: int = MAX_MUSIC_BYTES) -> CheckedMusic:
    """`data` as audio within the limits, or an ApiError saying why not."""
    if len(data) > max_bytes:
        raise too_large(max_bytes)
    if not data:
        raise unsupported()
    for demuxer, extension in DEMUXERS:
        found = _decodes(data, demuxer)
        if found is not None:
            codec, rate, channels = found
            return CheckedMusic(data=data, extension=extension, codec=codec, sample_rate=rate, channels=channels)
    raise unsupported()


def _decodes(data: bytes, demuxer: str) -> tuple[str, int, int] | None:
    import av

    try:
        with av.open(io.BytesIO(data), format=demuxer) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            samples = 0
            for frame in container.decode(stream):
                samples += frame.samples
                if samples >= MIN_SAMPLES:
                    return stream.codec_context.name, stream.codec_context.sample_rate, stream.codec_context.channels
    except (av.FFmpegError, ValueError, OSError, EOFError):
        return None
    return None
