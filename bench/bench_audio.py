"""Sound for a finished video: audio preparation, mixing, loudness normalisation and mux
time, and peak memory, for a 60 s and a 600 s video side by side.

    python bench/bench_audio.py                 # 60 s and 600 s
    python bench/bench_audio.py --lengths 30 60 --burn
    python bench/bench_audio.py --no-music      # narration only

Each length gets a tiny-picture video (128x72, 12 fps, no audio of its own), a mono 22.05
kHz narration WAV of voice-like bursts (2 s on, 1 s off: a phrase every 3 s), a 95 s AAC
music file (so it loops), and one cue per phrase; they are made once and cached in a temp
folder. Then `longvid.sound.add_sound` runs in a fresh interpreter per length, so each
memory figure is its own: CPU time of the whole process (interpreter and imports included)
and of the add_sound call alone, peak RSS (wait4's ru_maxrss and the sampled /proc figure), the
RSS after imports, and the growth between them, which is what the sound code itself holds.
Memory is flat when that growth is the same at 60 s and at 600 s.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import MB, run_measured, self_maxrss_bytes, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FPS, WIDTH, HEIGHT = 12, 128, 72
MUSIC_S = 95.0


def _write_inputs(folder: Path, seconds: int) -> dict:
    import av
    import numpy as np
    import scipy.io.wavfile

    from longvid.media.encoding import add_h264_stream, video_frame

    folder.mkdir(parents=True, exist_ok=True)
    video, narration, music = folder / "video.mp4", folder / "narration.wav", folder.parent / "music.m4a"
    if not video.exists():
        with av.open(str(video), "w") as container:
            stream = add_h264_stream(container, WIDTH, HEIGHT, FPS)
            y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
            for k in range(seconds * FPS):
                pixels = np.stack([(x * 2 + k) % 256, y * 3, np.full_like(x, 80)], axis=-1).astype(np.uint8)
                container.mux(stream.encode(video_frame(pixels, k, keyframe=k % (2 * FPS) == 0)))
            container.mux(stream.encode(None))
    if not narration.exists():
        rate = 22050
        t = np.arange(seconds * rate) / rate
        voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 900), 1)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        voice *= (t % 3) < 2
        scipy.io.wavfile.write(narration, rate, (0.3 * voice / np.abs(voice).max()).astype(np.float32))
    if not music.exists():
        rate = 44100
        with av.open(str(music), "w") as container:
            stream = container.add_stream("aac", rate=rate)
            stream.layout = "stereo"
            for start in range(0, int(MUSIC_S * rate), rate):
                t = (start + np.arange(rate)) / rate
                wave = (0.2 * sum(np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) / 3).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
                frame.sample_rate, frame.pts = rate, start
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
    cues = [[k * 3.0, k * 3.0 + 2.0, f"phrase {k}: 一只红色的狐狸"] for k in range(seconds // 3)]
    return {"video": str(video), "narration": str(narration), "music": str(music), "cues": cues, "seconds": seconds}


def _peak_rss() -> int:
    """This program's own peak RSS. Not ru_maxrss: Linux carries that across exec from the
    process that forked us (the parent that just made a 600 s narration in memory)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return self_maxrss_bytes()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(spec: dict, out: Path, burn: bool, music: bool) -> None:
    from longvid.sound import Cue, SoundOptions, add_sound

    cues = [Cue(*c) for c in spec["cues"]]
    baseline = _peak_rss()
    started, cpu_before = time.perf_counter(), _cpu_s()
    stats = add_sound(Path(spec["video"]), out, narration=Path(spec["narration"]), cues=cues,
                      options=SoundOptions(music=Path(spec["music"]) if music else None, burn_subtitles=burn))
    print(json.dumps({
        "op_s": time.perf_counter() - started, "op_cpu_s": _cpu_s() - cpu_before, "baseline_rss": baseline, "maxrss_self": _peak_rss(),
        "lufs": stats.loudness_lufs, "true_peak": stats.true_peak_dbtp, "steps": stats.step_s,
        "looped": stats.music_looped, "limited_s": stats.limited_s,
    }))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[60, 600])
    parser.add_argument("--burn", action="store_true", help="also burn the subtitles in (re-encodes the picture)")
    parser.add_argument("--no-music", action="store_true", help="narration only (the offline preview's case)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(Path(args.worker).read_text()), Path(args.out), args.burn, not args.no_music)
        return 0

    cache = Path(tempfile.gettempdir()) / "longvid-bench-audio"
    results = {}
    for seconds in args.lengths:
        began = time.perf_counter()
        spec = _write_inputs(cache / f"{seconds}s", seconds)
        print(f"inputs for {seconds} s ready ({time.perf_counter() - began:.1f} s)", file=sys.stderr)
        with tempfile.TemporaryDirectory() as scratch:
            spec_file = Path(scratch) / "inputs.json"
            spec_file.write_text(json.dumps(spec))
            cmd = [sys.executable, __file__, "--worker", str(spec_file), "--out", str(Path(scratch) / "final.mp4")]
            if args.burn:
                cmd.append("--burn")
            if args.no_music:
                cmd.append("--no-music")
            run = run_measured(cmd, cwd=str(ROOT))
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
            return 1
        report = json.loads(run.stdout.strip().splitlines()[-1])
        report["sampled_rss"] = run.tree.peak_rss
        report["cpu_s"] = run.user_s + run.sys_s
        results[seconds] = report

    steps = sorted({step for r in results.values() for step in r["steps"]})
    headers = ["", *(f"{s} s" for s in args.lengths)]
    rows = [[f"{step} (s)", *(f"{results[s]['steps'].get(step, 0):.2f}" for s in args.lengths)] for step in steps]
    rows += [
        ["add_sound total (s)", *(f"{results[s]['op_s']:.2f}" for s in args.lengths)],
        ["x realtime", *(f"{s / results[s]['op_s']:.1f}" for s in args.lengths)],
        ["CPU, user + sys (s)", *(f"{results[s]['cpu_s']:.1f}" for s in args.lengths)],
        ["add_sound CPU, user + sys (s)", *(f"{results[s]['op_cpu_s']:.2f}" for s in args.lengths)],
        ["add_sound CPU per s of audio", *(f"{results[s]['op_cpu_s'] / s:.3f}" for s in args.lengths)],
        ["peak RSS after imports (MB)", *(f"{results[s]['baseline_rss'] / MB:.0f}" for s in args.lengths)],
        ["peak RSS, VmHWM (MB)", *(f"{results[s]['maxrss_self'] / MB:.0f}" for s in args.lengths)],
        ["peak RSS, sampled (MB)", *(f"{results[s]['sampled_rss'] / MB:.0f}" for s in args.lengths)],
        ["growth during add_sound (MB)", *(f"{(results[s]['maxrss_self'] - results[s]['baseline_rss']) / MB:.0f}" for s in args.lengths)],
        ["loudness (LUFS)", *(f"{results[s]['lufs']:.2f}" for s in args.lengths)],
        ["true peak (dBTP)", *(f"{results[s]['true_peak']:.2f}" for s in args.lengths)],
    ]
    print(table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
