"""A narrated render end to end on Ray (the session's one Ray instance): Gemini speech on
the local fake, the narration files in the run folder, scenes as long as their words, and a
resume that synthesises nothing again."""

import json
from pathlib import Path

import av
import pytest

from longvid.cli import main
from longvid.manifest import RunManifest, RunPlan
from longvid.media import probe
from longvid.sound.speech import SpeechClip
from longvid.sound.subtitles import read_srt
from longvid.testing.fake_gemini import start_fake_gemini

pytestmark = pytest.mark.ray


def test_a_narrated_render_keeps_its_speech_and_never_pays_for_it_twice(ray_session, tmp_path, capsys, monkeypatch):
    with start_fake_gemini() as server:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        argv = ["render", "a lighthouse on a cliff at night. a ship arrives at dawn.", "-d", "12", "--resolution", "360p",
                "--planner", "offline", "--speech", "gemini", "--runs-dir", str(tmp_path / "runs"), "--run-id", "narrated",
                "-o", str(tmp_path / "narrated.mp4"), "--json"]
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out)
        spoken_calls = server.fake.request_count
        run = Path(result["run_dir"])
        plan = RunPlan.model_validate_json((run / "plan.json").read_text())
        narration = plan.narration
        assert spoken_calls == len({p.key for p in narration.phrases}) > 0  # one call per distinct phrase, nothing else
        assert probe(run / "final.mp4").frames == sum(narration.scene_frames) == result["frames"]
        for scene, frames in enumerate(narration.scene_frames):
            assert sum(s.frames for s in plan.segments if s.scene_index == scene) == frames
        track = SpeechClip.from_wav((run / "narration.wav").read_bytes())
        assert track.duration_s == pytest.approx(result["frames"] / 24, abs=0.01)
        cues = read_srt((run / "subtitles.srt").read_text())
        assert [c.text for c in cues] == [p.text for p in narration.phrases]
        assert (run / "subtitles.vtt").read_text().startswith("WEBVTT")
        assert read_srt((tmp_path / "narrated.srt").read_text()) == cues  # beside the output too
        assert (tmp_path / "narrated.vtt").read_text() == (run / "subtitles.vtt").read_text()
        assert len(list((run / "speech").glob("*.wav"))) == len({p.key for p in narration.phrases})
        manifest = RunManifest.model_validate_json((run / "manifest.json").read_text())
        speech_entries = [e for e in manifest.ledger if e.provider == "gemini-tts"]
        assert len(speech_entries) == len({p.key for p in narration.phrases}) and manifest.cost_usd > 0
        assert not [w for w in manifest.warnings if "may have been paid for without a result" in w]
        assert server.api_key not in (run / "manifest.json").read_text()

        with av.open(str(run / "final.mp4")) as final:  # the soundtrack and the soft subtitle track are muxed in
            kinds = sorted(s.type for s in final.streams)
            assert kinds == ["audio", "subtitle", "video"] and final.streams.subtitles[0].codec_context.name == "mov_text"
        assert result["sound"]["subtitles"] == len(cues) and abs(result["sound"]["loudness_lufs"] + 14) <= 1

        (run / "narration.wav").unlink()  # resume rebuilds the track from the stored clips
        assert main(["resume", "narrated", "--runs-dir", str(tmp_path / "runs"), "--json"]) == 0
        capsys.readouterr()
        assert server.fake.request_count == spoken_calls  # nothing synthesised (or paid) again
        assert SpeechClip.from_wav((run / "narration.wav").read_bytes()).duration_s == pytest.approx(track.duration_s)
        again = RunManifest.model_validate_json((run / "manifest.json").read_text())
        assert [e for e in again.ledger if e.provider == "gemini-tts"] == speech_entries
