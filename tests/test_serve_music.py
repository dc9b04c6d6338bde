"""Music uploads for the API, checked by decoding (serve/music.py), Ray-free."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from serve.errors import ApiError
from serve.music import check_music_bytes
from sound_helpers import write_music, write_narration, write_video


@pytest.mark.parametrize("name, codec, extension", [("m.m4a", "aac", "m4a"), ("m.mp3", "libmp3lame", "mp3"),
                                                     ("m.flac", "flac", "flac"), ("m.ogg", "libopus", "ogg")])
def test_audio_files_are_accepted_by_what_they_decode_as(tmp_path, name, codec, extension):
    path = write_music(tmp_path / name, 1.0, codec=codec, rate=48000)
    checked = check_music_bytes(path.read_bytes())
    assert checked.extension == extension and checked.channels == 2 and checked.sample_rate == 48000
    assert checked.filename == f"{checked.sha256}.{extension}"


def test_a_wav_narration_is_accepted_too(tmp_path):
    assert check_music_bytes(write_narration(tmp_path / "n.wav", [(0, 1)], 1.0).read_bytes()).extension == "wav"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("make", [
    lambda d: b"",
    lambda d: b"just some text, not music\n" * 50,
    lambda d: _png(),
    lambda d: write_video(d / "v.mp4", 1.0).read_bytes(),  # a video with no sound
    lambda d: b"#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",  # HLS is never probed
    lambda d: write_music(d / "m.m4a", 1.0).read_bytes()[:300],  # truncated
], ids=["empty", "text", "png", "silent-video", "hls-playlist", "truncated"])
def test_what_is_not_audio_is_a_415(tmp_path, make):
    with pytest.raises(ApiError) as caught:
        check_music_bytes(make(tmp_path))
    assert caught.value.status == 415 and caught.value.code == "unsupported_music"


def test_a_file_over_the_cap_is_a_413_before_it_is_decoded(tmp_path):
    data = write_music(tmp_path / "m.m4a", 1.0).read_bytes()
    with pytest.raises(ApiError) as caught:
        check_music_bytes(data, max_bytes=len(data) - 1)
    assert caught.value.status == 413 and caught.value.code == "music_too_large"
