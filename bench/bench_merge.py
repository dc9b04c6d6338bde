"""Merging six 10 s 720p clips with crossfades: longvid's merge against the alternatives.

    python bench/bench_merge.py                 # 3 rounds of (a), (b), (d); 1 of moviepy
    python bench/bench_merge.py --repeat 5 --moviepy-repeat 2
    python bench/bench_merge.py --skip-moviepy  # no separate venv needed

Methods, each in its own subprocess (so its memory is its own):
  (a) longvid.media.merge_segments(stream_copy=True): re-encodes the seam windows only and
      stream-copies the GOPs between them.
  (b) the same call with stream_copy=False: decode, blend, re-encode everything.
  (c) moviepy 2.x: concatenate_videoclips(method="compose", padding=-crossfade) with
      CrossFadeIn on every clip after the first, written with libx264 preset veryfast and
      crf 20 (our encoder's settings). moviepy pins an old Pillow, so it runs in its own venv,
      bench/.venv-moviepy, created on first use (`pip install "moviepy>=2.1"`).
  (d) PyAV stream-copy concat: every packet of the six files one after another, timestamps
      shifted, no transitions. Nothing is decoded: the floor.

The six clips are rendered once by the project's own preview provider from a hand-made
six-scene storyboard segmented with SegmentationRules(min_long_segments=6,
seconds_per_segment=10): 240 timeline frames each, 6-frame crossfade tails, IDR frames at
the seams as in a real render. They are cached in a temp folder keyed by a hash of the jobs
and of the renderer/encoder sources, so reruns skip that minute.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import MB, run_measured, self_maxrss_bytes, table  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MOVIEPY_VENV = BENCH / ".venv-moviepy"

METHODS = {
    "a": ("longvid merge: seam re-encode + stream copy", "longvid-copy"),
    "b": ("longvid merge: full re-encode", "longvid-reencode"),
    "c": ("moviepy concatenate, crossfade (compose)", "moviepy"),
    "d": ("PyAV stream-copy concat, no transitions (floor)", "streamcopy"),
}

# --------------------------------------------------------------------------------------
# Workers: each runs in a fresh interpreter and prints one JSON line last on stdout.
# The moviepy one runs in bench/.venv-moviepy, so workers import only what they use.


def _report(op_s: float, baseline: int, **extra) -> None:
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    print(json.dumps({
        "op_s": op_s,
        "baseline_rss": baseline,  # ru_maxrss after imports, before the work
        "maxrss_self": self_maxrss_bytes(),
        "maxrss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
        **extra,
    }))


def worker_longvid(manifest: dict, out: Path, stream_copy: bool) -> None:
    from longvid.media import MergeInput, merge_segments
    from longvid.spec import Transition

    inputs = [MergeInput(Path(c["path"]), c["frames"], c["head_frames"], Transition(c["head_transition"]), c["tail_frames"])
              for c in manifest["clips"]]
    baseline = self_maxrss_bytes()
    started = time.perf_counter()
    stats = merge_segments(inputs, out, manifest["fps"], manifest["width"], manifest["height"], stream_copy=stream_copy)
    op = time.perf_counter() - started
    _report(op, baseline, frames=stats.frames, copied_frames=stats.copied_frames, encoded_frames=stats.encoded_frames,
            copied_segments=stats.copied_segments, merge_seconds=stats.seconds)


def worker_moviepy(manifest: dict, out: Path) -> None:
    import importlib.metadata

    import imageio_ffmpeg
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    fade = manifest["crossfade_s"]
    baseline = self_maxrss_bytes()
    started = time.perf_counter()
    clips = [VideoFileClip(c["path"], audio=False) for c in manifest["clips"]]
    # The first clip has nothing to fade from; fading it in would be a fade from black.
    faded = [clips[0]] + [c.with_effects([vfx.CrossFadeIn(fade)]) for c in clips[1:]]
    final = concatenate_videoclips(faded, method="compose", padding=-fade)
    final.write_videofile(str(out), codec="libx264", fps=manifest["fps"], audio=False, preset="veryfast",
                          ffmpeg_params=["-crf", "20"], logger=None)
    for c in clips:
        c.close()
    op = time.perf_counter() - started
    _report(op, baseline, moviepy_version=importlib.metadata.version("moviepy"),
            ffmpeg=imageio_ffmpeg.get_ffmpeg_version(), duration_s=final.duration)


def worker_streamcopy(manifest: dict, out: Path) -> None:
    from fractions import Fraction

    import av

    baseline = self_maxrss_bytes()
    started = time.perf_counter()
    sources = [av.open(c["path"]) for c in manifest["clips"]]
    extradata = {bytes(s.streams.video[0].codec_context.extradata or b"") for s in sources}
    offset = Fraction(0)  # seconds of output written so far
    packets = 0
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        ostream = dst.add_stream_from_template(sources[0].streams.video[0])
        for src in sources:
            stream = src.streams.video[0]
            tb = stream.time_base
            frame_ticks = int(round(1 / (tb * manifest["fps"])))
            start = shift = None
            end = 0
            for packet in src.demux(stream):
                if not packet.size or packet.pts is None:
                    continue
                if start is None:  # the first packet is the opening IDR, the earliest pts
                    start = packet.pts
                    shift = int(round(offset / tb)) - start
                end = max(end, packet.pts + (packet.duration or frame_ticks))
                packet.pts += shift
                if packet.dts is not None:
                    packet.dts += shift
                packet.stream = ostream
                dst.mux(packet)
                packets += 1
            offset += (end - start) * tb
    for s in sources:
        s.close()
    op = time.perf_counter() - started
    _report(op, baseline, packets=packets, same_extradata=len(extradata) == 1)


# --------------------------------------------------------------------------------------
# The six clips.

SCENES = [
    ("a red fox explores a snowy forest at dawn", "dawn", "pan_right", ["#2b3a55", "#ce7777", "#e8c4c4", "#f2e5e5"]),
    ("the fox crosses a frozen river on thin ice", "overcast", "static", ["#5b7b9a", "#a9c6de", "#d9e6f2", "#ffffff"]),
    ("it climbs a steep snowy ridge", "day", "tilt_up", ["#1d3557", "#457b9d", "#a8dadc", "#f1faee"]),
    ("wind blows snow across the summit", "golden_hour", "zoom_in", ["#3d2c8d", "#916bbf", "#c996cc", "#f2d7e8"]),
    ("the fox looks over the valley as the sun sets", "dusk", "dolly", ["#22223b", "#4a4e69", "#9a8c98", "#c9ada7"]),
    ("night falls and stars fill the sky over the fox's den", "night", "zoom_out", ["#0b132b", "#1c2541", "#3a506b", "#5bc0be"]),
]


def build_jobs():
    from longvid.planning.segmentation import SegmentationRules, segment_storyboard
    from longvid.providers.preview import PREVIEW_CAPABILITIES
    from longvid.spec import CameraMove, Character, Lighting, RenderSpec, Scene, Storyboard, Transition

    scenes = [
        Scene(description=d, duration_s=10, lighting=Lighting(light), camera_movement=CameraMove(cam), color_palette=palette,
              characters=[Character(name="red fox")], transition=Transition.CROSSFADE)
        for d, light, cam, palette in SCENES
    ]
    storyboard = Storyboard(title="fox benchmark", prompt=SCENES[0][0], scenes=scenes)
    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn, then crosses a frozen river, then climbs a ridge",
                      duration_s=60, resolution="720p")
    rules = SegmentationRules(min_long_segments=6, seconds_per_segment=10)
    jobs = segment_storyboard(storyboard, spec, PREVIEW_CAPABILITIES.durations, rules)
    if len(jobs) != 6 or any(j.frames != 240 for j in jobs):
        raise SystemExit(f"expected 6 segments of 240 frames, the segmenter made {[j.frames for j in jobs]}")
    return spec, jobs


def _render_clip(job_json: str, path: str) -> float:
    from longvid.providers.preview import PreviewProvider
    from longvid.spec import SegmentJob

    started = time.perf_counter()
    job = SegmentJob.model_validate_json(job_json)
    provider = PreviewProvider()
    data = provider.fetch(provider.submit(job))
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return time.perf_counter() - started


def ensure_clips(cache_root: Path) -> dict:
    import av

    import longvid.media.encoding
    import longvid.providers.preview

    spec, jobs = build_jobs()
    key = hashlib.sha256()
    for job in jobs:
        key.update(job.model_dump_json().encode())
    for module in (longvid.providers.preview, longvid.media.encoding):
        key.update(Path(module.__file__).read_bytes())
    key.update(av.__version__.encode())
    folder = cache_root / key.hexdigest()[:16]
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        print(f"clips: cached in {folder}")
        return json.loads(manifest_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    from concurrent.futures import ProcessPoolExecutor

    paths = [folder / f"seg-{j.index:02d}.mp4" for j in jobs]
    started = time.perf_counter()
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    print(f"clips: rendering {len(jobs)} x {jobs[0].width}x{jobs[0].height} with the preview provider on {workers} processes ...", flush=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_render_clip, [j.model_dump_json() for j in jobs], [str(p) for p in paths]))
    print(f"clips: rendered in {time.perf_counter() - started:.1f} s -> {folder}")
    width, height = spec.frame_size
    manifest = {
        "fps": spec.fps, "width": width, "height": height,
        "crossfade_s": jobs[0].tail_frames / spec.fps,
        "clips": [{"path": str(p), "frames": j.frames, "head_frames": j.head_frames, "head_transition": j.head_transition.value,
                   "tail_frames": j.tail_frames, "rendered_frames": int(round(j.generate_duration_s * j.fps))}
                  for p, j in zip(paths, jobs)],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


# --------------------------------------------------------------------------------------
# The moviepy venv.


def moviepy_python(args) -> tuple[str | None, str]:
    """(interpreter, note) or (None, reason)."""
    if args.skip_moviepy:
        return None, "skipped (--skip-moviepy)"
    python = Path(args.moviepy_python) if args.moviepy_python else MOVIEPY_VENV / "bin" / "python"
    # moviepy 2.2.1's own __version__ says 2.1.2; the installed distribution's metadata is right.
    check = [str(python), "-c", "import moviepy, importlib.metadata as m; print(m.version('moviepy'))"]
    if python.exists():
        r = subprocess.run(check, capture_output=True, text=True)
        if r.returncode == 0:
            return str(python), f"moviepy {r.stdout.strip()} in {python.parent.parent}"
    if args.moviepy_python:
        return None, f"{python} cannot import moviepy"
    started = time.perf_counter()
    print(f"moviepy: creating {MOVIEPY_VENV.relative_to(ROOT)} and installing moviepy>=2.1 ...", flush=True)
    try:
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(MOVIEPY_VENV)], check=True, capture_output=True, text=True, timeout=180)
        subprocess.run([str(MOVIEPY_VENV / "bin" / "pip"), "install", "--quiet", "moviepy>=2.1"], check=True,
                       capture_output=True, text=True, timeout=600)
        r = subprocess.run(check, capture_output=True, text=True, check=True)
    except subprocess.CalledProcessError as exc:
        lines = ((exc.stderr or "") + (exc.stdout or "")).strip().splitlines()
        return None, f"setup failed: {' '.join(map(str, exc.cmd[:3]))}...: {lines[-1] if lines else exc.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"setup failed: {exc}"
    print(f"moviepy: ready in {time.perf_counter() - started:.0f} s (not counted)")
    return str(python), f"moviepy {r.stdout.strip()} in {MOVIEPY_VENV.relative_to(ROOT)}"


# --------------------------------------------------------------------------------------
# Checks on the outputs.


def psnr_against(reference: Path, others: dict[str, Path], seams: set[int]) -> dict[str, dict | str]:
    """Per-frame luma PSNR of each output against `reference`, decoded in lockstep, split
    into seam frames (the crossfades) and the rest: {part: (mean, min, frame of the min)}.
    Off a seam, only encoding loss differs; a misplaced clip would show there as a low minimum."""
    import av
    import numpy as np

    def frames(path):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            for f in c.decode(s):
                yield f.to_ndarray(format="gray")

    results = {}
    for name, path in others.items():
        values = []
        for a, b in zip(frames(reference), frames(path)):
            if a.shape != b.shape:
                results[name] = f"size {b.shape} vs {a.shape}"
                break
            mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
            values.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
        else:
            parts = {}
            for part, keep in (("seams", lambda k: k in seams), ("elsewhere", lambda k: k not in seams)):
                chosen = [(v, k) for k, v in enumerate(values) if keep(k)]
                if chosen:
                    worst = min(chosen)
                    parts[part] = (float(np.mean([v for v, _ in chosen])), worst[0], worst[1])
            results[name] = parts
    return results


# --------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=[w for _, w in METHODS.values()], help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--methods", default="abcd", help="which of a, b, c, d to run (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds of (a), (b), (d); the best of each is compared (default %(default)s)")
    ap.add_argument("--moviepy-repeat", type=int, default=1, help="rounds of (c), the slow one (default %(default)s)")
    ap.add_argument("--skip-moviepy", action="store_true")
    ap.add_argument("--moviepy-python", help="an interpreter that has moviepy (default: bench/.venv-moviepy, made on demand)")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "longvid-bench-merge-clips")
    ap.add_argument("--no-compare", action="store_true", help="skip the PSNR check of outputs against (b)")
    ap.add_argument("--keep", action="store_true", help="keep the merged outputs")
    args = ap.parse_args()

    if args.worker:
        manifest = json.loads(Path(args.manifest).read_text())
        out = Path(args.out)
        if args.worker == "longvid-copy":
            worker_longvid(manifest, out, stream_copy=True)
        elif args.worker == "longvid-reencode":
            worker_longvid(manifest, out, stream_copy=False)
        elif args.worker == "moviepy":
            worker_moviepy(manifest, out)
        else:
            worker_streamcopy(manifest, out)
        return 0

    import av

    print(f"merge benchmark: python {sys.version.split()[0]}, PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info}), {os.cpu_count()} CPUs")
    manifest = ensure_clips(args.cache_dir)
    clips = manifest["clips"]
    manifest_file = Path(clips[0]["path"]).parent / "manifest.json"
    fade_frames = clips[0]["tail_frames"]
    print(f"inputs: {len(clips)} clips {manifest['width']}x{manifest['height']} @ {manifest['fps']} fps, "
          f"rendered {[c['rendered_frames'] for c in clips]} frames, timeline {[c['frames'] for c in clips]}, "
          f"crossfade {fade_frames} frames ({manifest['crossfade_s']:g} s)")
    expected = {
        "a": sum(c["frames"] for c in clips),
        "b": sum(c["frames"] for c in clips),
        "c": sum(c["rendered_frames"] for c in clips) - fade_frames * (len(clips) - 1),
        "d": sum(c["rendered_frames"] for c in clips),
    }

    methods = [m for m in "abcd" if m in args.methods]
    pythons = {m: sys.executable for m in methods}
    unavailable: dict[str, str] = {}
    if "c" in methods:
        python, note = moviepy_python(args)
        if python is None:
            unavailable["c"] = note
            print(f"moviepy: unavailable ({note})")
            methods.remove("c")
        else:
            pythons["c"] = python
            print(f"moviepy: {note}")

    outdir = Path(tempfile.mkdtemp(prefix="longvid-bench-merge-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    for round_ in range(args.repeat):
        for m in methods:
            if m == "c" and round_ >= args.moviepy_repeat:
                continue
            out = outdir / f"{m}.mp4"
            out.unlink(missing_ok=True)
            cmd = [pythons[m], str(Path(__file__).resolve()), "--worker", METHODS[m][1], "--manifest", str(manifest_file), "--out", str(out)]
            measured = run_measured(cmd, cwd=str(ROOT), env=env, timeout=600, interval=0.05)
            if measured.returncode != 0:
                tail = (measured.stderr.strip().splitlines() or ["(no stderr)"])[-1]
                print(f"  ({m}) round {round_ + 1}: FAILED exit {measured.returncode}: {tail}", flush=True)
                runs[m].append({"error": tail, "measured": measured})
                continue
            report = json.loads(measured.stdout.strip().splitlines()[-1])
            runs[m].append({"report": report, "measured": measured})
            print(f"  ({m}) round {round_ + 1}: {report['op_s']:.2f} s", flush=True)

    from longvid.media import probe

    results: dict[str, dict] = {}
    for m in methods:
        good = [r for r in runs[m] if "report" in r]
        if not good:
            unavailable[m] = "failed: " + runs[m][-1]["error"]
            continue
        best = min(good, key=lambda r: r["report"]["op_s"])
        rep, meas = best["report"], best["measured"]
        peak = max(meas.tree.peak_rss, meas.maxrss_bytes, rep["maxrss_self"])
        out = outdir / f"{m}.mp4"
        results[m] = {"rep": rep, "meas": meas, "peak": peak, "info": probe(out), "size": out.stat().st_size,
                      "walls": [r["report"]["op_s"] for r in good]}

    compare: dict[str, object] = {}
    if not args.no_compare and "b" in results:
        started = time.perf_counter()
        seams, start = set(), 0
        for c in clips:
            seams.update(range(start, start + c["head_frames"]))
            start += c["frames"]
        compare = psnr_against(outdir / "b.mp4", {m: outdir / f"{m}.mp4" for m in ("a", "c") if m in results}, seams)
        print(f"  (PSNR check: {time.perf_counter() - started:.1f} s)")

    base = results.get("a")
    headers = ["", "method", "merge s", "x (a)", "process s", "peak RSS MB", "x (a)", "tree RSS MB", "max proc MB", "imports MB",
               "frames", "expected", "codec", "MB out"]
    body = []
    failures = []
    for m in "abcd":
        if m not in args.methods:
            continue
        label = METHODS[m][0]
        if m not in results:
            body.append([f"({m})", label, "unavailable"] + ["-"] * (len(headers) - 3))
            continue
        r = results[m]
        rep, meas, info = r["rep"], r["meas"], r["info"]
        body.append([
            f"({m})", label, f"{rep['op_s']:.2f}", f"{rep['op_s'] / base['rep']['op_s']:.2f}" if base else "-",
            f"{meas.wall_s:.2f}", f"{r['peak'] / MB:.0f}", f"{r['peak'] / base['peak']:.2f}" if base else "-",
            f"{meas.tree.peak_rss / MB:.0f}", f"{max(meas.maxrss_bytes, rep['maxrss_self']) / MB:.0f}", f"{rep['baseline_rss'] / MB:.0f}",
            str(info.frames), str(expected[m]), f"{info.codec}/{info.pix_fmt}", f"{r['size'] / MB:.1f}",
        ])
        if info.frames != expected[m]:
            failures.append(f"({m}) decoded {info.frames} frames, expected {expected[m]}")
        if (info.width, info.height) != (manifest["width"], manifest["height"]):
            failures.append(f"({m}) is {info.width}x{info.height}")
    print()
    print(table(headers, body, right={2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13}))
    print()
    lines = []
    if base:
        rep = base["rep"]
        lines.append(["(a) frames: copied / re-encoded / total", f"{rep['copied_frames']} / {rep['encoded_frames']} / {rep['frames']}"
                      f"  ({rep['copied_segments']} of {len(clips)} segments had a copy range)"])
        if rep["copied_segments"] != len(clips):
            failures.append(f"(a) copied from {rep['copied_segments']} of {len(clips)} segments; the clips should all be copyable")
    for m, other in (("b", "full re-encode"), ("c", "moviepy"), ("d", "stream-copy floor")):
        if base and m in results:
            s = results[m]["rep"]["op_s"] / base["rep"]["op_s"]
            lines.append([f"(a) vs {other}: time", f"(a) is {s:.2f}x faster" if s >= 1 else f"(a) is {1 / s:.2f}x slower"])
            k = results[m]["peak"] / base["peak"]
            lines.append([f"(a) vs {other}: peak RSS", f"(a) uses {k:.2f}x less" if k >= 1 else f"(a) uses {1 / k:.2f}x more"])
    if "d" in results:
        rep = results["d"]["rep"]
        lines.append(["(d) packets remuxed / same SPS+PPS in all clips", f"{rep['packets']} / {rep['same_extradata']}"])
    if "c" in results:
        rep = results["c"]["rep"]
        lines.append(["(c) moviepy / its ffmpeg", f"{rep.get('moviepy_version', '?')} / {rep.get('ffmpeg', '?')}"])
    for m, parts in compare.items():
        if isinstance(parts, str):
            lines.append([f"({m}) luma PSNR vs (b)", parts])
            continue
        for part, (mean, low, at) in parts.items():
            lines.append([f"({m}) luma PSNR vs (b), {part}", f"mean {mean:.1f} dB, min {low:.1f} dB (frame {at})"])
    for m in results:
        if len(results[m]["walls"]) > 1:
            lines.append([f"({m}) all rounds, s (best is used)", ", ".join(f"{w:.2f}" for w in results[m]["walls"])])
    for m, why in unavailable.items():
        lines.append([f"({m}) {METHODS[m][0].split(':')[0].split(' ')[0]}", f"unavailable ({why})"])
    print(table(["figure", "value"], lines, right=set()))
    print()
    print("notes: 'merge s' is timed inside the worker around the merge alone; 'process s' adds interpreter start and imports.")
    print("       'peak RSS' = max(sampled tree RSS sum, wait4 ru_maxrss); for moviepy the tree includes its ffmpeg")
    print("       reader/writer processes. 'imports MB' is the worker's RSS before the merge started.")
    print("       PSNR: (b) is the reference; off the seams only encoding generations differ. On the seams moviepy's")
    print("       CrossFadeIn ramps alpha k/L (0 .. 5/6) where longvid uses (k+1)/(L+1) (1/7 .. 6/7), so they differ by design.")
    print("       Reference (issue, another machine): moviepy 72 s / 930 MB; full PyAV re-encode 23 s; stream copy 0.15 s.")
    if failures:
        print("\nFAILED CHECKS:")
        for f in failures:
            print("  " + f)
    if args.keep:
        print(f"\noutputs kept in {outdir}")
    else:
        import shutil

        shutil.rmtree(outdir, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
