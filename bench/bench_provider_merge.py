"""Merging provider-style clips (issue 14): longvid's time after the last segment arrives
against ffmpeg's xfade/acrossfade full re-encode and a stream-copy concat floor.

    python bench/bench_provider_merge.py                          # 720p24 and 1080p30->24, six 10 s clips
    python bench/bench_provider_merge.py --profiles 720p24 --seconds 5 --repeat 2
    python bench/bench_provider_merge.py --profiles 720p24 --methods awox --repeat 2   # (x) once: --xfade-repeat

Last it normalises the last clip with the merge's preset (veryfast) and the normalising one
(superfast, same CRF and parameter sets) and prints CPU seconds, bytes and luma PSNR of each.

The clips are what a provider returns, not what longvid encodes: the preview renderer's
pictures encoded by another x264 configuration (preset medium, one keyframe for the whole
clip, B-frames) with AAC 44.1 kHz stereo (longvid/testing/provider_clip.py); for 1080p30
at 30 fps, which the merge must convert to the output's 24. Cached under $TMPDIR.

Methods, each in its own subprocess (its memory is its own):
  (a) longvid after the last segment arrives, when it is the timeline's last: the others were
      normalised while it was generating (one task each as it arrived) and merged ahead in
      timeline order (runtime/merge_ahead.py, not timed); then normalise it and finish the
      merge (its seam re-encoded, its body copied, picture and sound joined).
  (w) the same when the late segment is the timeline's first: nothing could be merged ahead,
      so after normalising it the whole merge runs (seams re-encoded, the rest copied).
  (o) as before the merge ahead: normalise the last segment, then one-shot merge_segments.
  (r) longvid merging the raw provider clips (what happened before normalisation existed).
  (x) ffmpeg's xfade + acrossfade filters over all six clips, fps/scale/trim per input, a full
      libx264 re-encode with longvid's settings (veryfast, crf 20) and AAC. Run through
      PyAV's libavfilter, the same filters the ffmpeg CLI runs (this machine has no ffmpeg
      binary; with one on PATH, `--ffmpeg-cli` runs the CLI instead).
  (d) PyAV stream-copy concat of the provider clips, no transitions, no audio: the floor.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _proctree import MB, run_measured, self_maxrss_bytes, table  # noqa: E402

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PROFILES = {"720p24": ("720p", 24), "1080p30": ("1080p", 30)}  # output resolution, the provider's frame rate
METHODS = {
    "a": ("longvid after the last segment (the timeline's last): normalise it + finish the merge ahead", "last"),
    "w": ("longvid after the last segment (the timeline's first): normalise it + the whole merge", "first"),
    "o": ("longvid before the merge ahead: normalise the last + one-shot merge_segments", "oneshot"),
    "r": ("longvid merge of the raw provider clips", "raw"),
    "x": ("ffmpeg xfade + acrossfade, full re-encode", "xfade"),
    "d": ("stream-copy concat, no transitions (floor)", "streamcopy"),
}


_CPU_AT_START: list[float] = []


def _start() -> float:
    """The timed operation starts: its wall clock, and (for op_cpu_s) this process's CPU time."""
    _CPU_AT_START[:] = [_cpu_s()]
    return time.perf_counter()


def _report(op_s: float, baseline: int, **extra) -> None:
    # CPU seconds of the operation (all threads): on a shared, loaded machine the wall clock
    # mostly measures the other jobs; CPU time much less so.
    cpu = {"op_cpu_s": _cpu_s() - _CPU_AT_START[0]} if _CPU_AT_START else {}
    print(json.dumps({"op_s": op_s, "baseline_rss": baseline, "maxrss_self": self_maxrss_bytes(), **cpu, **extra}))


def _job(clip: dict):
    from longvid.spec import SegmentJob

    return SegmentJob.model_validate_json(clip["job"])


# -- workers -----------------------------------------------------------------------------


def _inputs(clips: list[dict], paths: list[Path]):
    from longvid.media import MergeInput
    from longvid.spec import Transition

    return [MergeInput(p, c["frames"], c["head_frames"], Transition(c["head_transition"]), c["tail_frames"]) for p, c in zip(paths, clips)]


def _after_arrival(manifest: dict, out: Path, late: int) -> None:
    """The render's merge ahead (runtime/merge_ahead.py) had every other segment; then segment
    `late` arrives: normalise it (NORMALISE_H264) and finish the merge. Timed from its arrival."""
    from longvid.media.timeline import TimelineMerge
    from longvid.runtime.merge_ahead import MERGE_AHEAD_H264
    from longvid.runtime.normalisation import normalise_segment

    clips = manifest["clips"]
    late_path = out.with_suffix(".late.mp4")
    paths = [Path(c["normalised"]) for c in clips]
    paths[late] = late_path
    inputs = _inputs(clips, paths)
    baseline = self_maxrss_bytes()
    merge = TimelineMerge(len(clips), out, manifest["fps"], manifest["width"], manifest["height"], MERGE_AHEAD_H264)
    ahead_started = time.perf_counter()
    for position in range(len(clips)):
        if position != late:
            merge.add(position, inputs[position])
    ahead_s = time.perf_counter() - ahead_started
    started = _start()
    normalised = normalise_segment(_job(clips[late]), Path(clips[late]["path"]).read_bytes(), want_seam=False)
    late_path.write_bytes(normalised.mp4)
    normalise_s = time.perf_counter() - started
    merge.add(late, inputs[late])
    stats = merge.finish()
    op = time.perf_counter() - started
    _report(op, baseline, normalise_last_s=normalise_s, merge_s=op - normalise_s, ahead_s=ahead_s, frames=stats.frames,
            copied_frames=stats.copied_frames, encoded_frames=stats.encoded_frames, copied_segments=stats.copied_segments)


def worker_last(manifest: dict, out: Path) -> None:
    _after_arrival(manifest, out, len(manifest["clips"]) - 1)


def worker_first(manifest: dict, out: Path) -> None:
    _after_arrival(manifest, out, 0)


def worker_oneshot(manifest: dict, out: Path) -> None:
    from longvid.media import merge_segments
    from longvid.runtime.normalisation import normalise_segment

    clips = manifest["clips"]
    baseline = self_maxrss_bytes()
    started = _start()
    last = clips[-1]
    normalised = normalise_segment(_job(last), Path(last["path"]).read_bytes(), want_seam=False)
    last_path = out.with_suffix(".last.mp4")
    last_path.write_bytes(normalised.mp4)
    normalise_s = time.perf_counter() - started
    inputs = _inputs(clips, [Path(c["normalised"]) for c in clips[:-1]] + [last_path])
    stats = merge_segments(inputs, out, manifest["fps"], manifest["width"], manifest["height"])
    op = time.perf_counter() - started
    _report(op, baseline, normalise_last_s=normalise_s, merge_s=stats.seconds, ahead_s=0.0, frames=stats.frames,
            copied_frames=stats.copied_frames, encoded_frames=stats.encoded_frames, copied_segments=stats.copied_segments)


def worker_raw(manifest: dict, out: Path) -> None:
    from longvid.media import MergeInput, merge_segments
    from longvid.spec import Transition

    inputs = [MergeInput(Path(c["path"]), c["frames"], c["head_frames"], Transition(c["head_transition"]), c["tail_frames"])
              for c in manifest["clips"]]
    baseline = self_maxrss_bytes()
    started = _start()
    stats = merge_segments(inputs, out, manifest["fps"], manifest["width"], manifest["height"])
    _report(time.perf_counter() - started, baseline, frames=stats.frames, copied_frames=stats.copied_frames)


def _xfade_offsets(clips: list[dict], fps: int) -> list[float]:
    """Where each transition starts on the output timeline: after the frames each segment
    contributes (its tail overlaps the next one's head)."""
    offsets, at = [], 0
    for clip in clips[:-1]:
        at += clip["frames"]
        offsets.append(at / fps)
    return offsets


def worker_xfade(manifest: dict, out: Path) -> None:
    from fractions import Fraction

    import av

    from longvid.media.encoding import add_h264_stream

    clips, fps, width, height = manifest["clips"], manifest["fps"], manifest["width"], manifest["height"]
    fade = clips[0]["tail_frames"] / fps
    offsets = _xfade_offsets(clips, fps)
    baseline = self_maxrss_bytes()
    started = _start()
    inputs = [av.open(c["path"]) for c in clips]
    graph = av.filter.Graph()
    video_in, audio_in, video_chain, audio_chain = [], [], [], []
    for clip, container in zip(clips, inputs):
        vs, as_ = container.streams.video[0], container.streams.audio[0]
        vs.thread_type = "AUTO"
        needed = clip["frames"] + clip["tail_frames"]
        src = graph.add_buffer(template=vs)
        node = src
        for name, args in (("fps", str(fps)), ("scale", f"{width}:{height}"), ("format", "yuv420p"),
                           ("trim", f"end_frame={needed}"), ("setpts", "PTS-STARTPTS")):
            nxt = graph.add(name, args)
            node.link_to(nxt)
            node = nxt
        asrc = graph.add_abuffer(template=as_)
        anode = asrc
        for name, args in (("aresample", "48000"), ("aformat", "sample_fmts=fltp:channel_layouts=stereo"),
                           ("atrim", f"end={needed / fps}"), ("asetpts", "PTS-STARTPTS")):
            nxt = graph.add(name, args)
            anode.link_to(nxt)
            anode = nxt
        video_in.append(src)
        audio_in.append(asrc)
        video_chain.append(node)
        audio_chain.append(anode)
    vnode, anode = video_chain[0], audio_chain[0]
    for k in range(1, len(clips)):
        xf = graph.add("xfade", f"transition=fade:duration={fade}:offset={offsets[k - 1]}")
        vnode.link_to(xf, 0, 0)
        video_chain[k].link_to(xf, 0, 1)
        ax = graph.add("acrossfade", f"d={fade}")
        anode.link_to(ax, 0, 0)
        audio_chain[k].link_to(ax, 0, 1)
        vnode, anode = xf, ax
    vsink, asink = graph.add("buffersink"), graph.add("abuffersink")
    vnode.link_to(vsink)
    anode.link_to(asink)
    graph.configure()

    frames = 0
    with av.open(str(out), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        video = add_h264_stream(dst, width, height, fps)
        audio = dst.add_stream("aac", rate=48000)
        audio.layout = "stereo"

        def drain():
            nonlocal frames
            for sink, is_video in ((vsink, True), (asink, False)):
                while True:
                    try:
                        frame = sink.pull()
                    except (BlockingIOError, av.error.BlockingIOError):
                        break
                    except (EOFError, av.error.EOFError):
                        break
                    if is_video:
                        frame.pts, frame.time_base, frame.pict_type = frames, Fraction(1, fps), av.video.frame.PictureType.NONE
                        frames += 1
                        dst.mux(video.encode(frame))
                    else:
                        frame.pts = None
                        dst.mux(audio.encode(frame))

        def push(source, frame) -> None:
            try:
                source.push(frame)
            except (EOFError, av.error.EOFError):  # trim has what it needs from this input: the rest is dropped
                pass

        for container, vsrc, asrc in zip(inputs, video_in, audio_in):
            for frame in container.decode(video=0, audio=0):
                push(vsrc if isinstance(frame, av.VideoFrame) else asrc, frame)
                drain()
            push(vsrc, None)
            push(asrc, None)
            drain()
        drain()
        dst.mux(video.encode(None))
        dst.mux(audio.encode(None))
    for container in inputs:
        container.close()
    _report(time.perf_counter() - started, baseline, frames=frames)


def worker_xfade_cli(manifest: dict, out: Path) -> None:
    clips, fps, width, height = manifest["clips"], manifest["fps"], manifest["width"], manifest["height"]
    fade = clips[0]["tail_frames"] / fps
    offsets = _xfade_offsets(clips, fps)
    parts, cmd = [], ["ffmpeg", "-y", "-v", "error"]
    for k, clip in enumerate(clips):
        cmd += ["-i", clip["path"]]
        needed = clip["frames"] + clip["tail_frames"]
        parts.append(f"[{k}:v]fps={fps},scale={width}:{height},format=yuv420p,trim=end_frame={needed},setpts=PTS-STARTPTS[v{k}]")
        parts.append(f"[{k}:a]aresample=48000,aformat=channel_layouts=stereo,atrim=end={needed / fps},asetpts=PTS-STARTPTS[a{k}]")
    v, a = "[v0]", "[a0]"
    for k in range(1, len(clips)):
        parts.append(f"{v}[v{k}]xfade=transition=fade:duration={fade}:offset={offsets[k - 1]}[vx{k}]")
        parts.append(f"{a}[a{k}]acrossfade=d={fade}[ax{k}]")
        v, a = f"[vx{k}]", f"[ax{k}]"
    cmd += ["-filter_complex", ";".join(parts), "-map", v, "-map", a, "-c:v", "libx264", "-preset", "veryfast", "-crf", "20",
            "-c:a", "aac", "-movflags", "+faststart", str(out)]
    baseline = self_maxrss_bytes()
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    _report(time.perf_counter() - started, baseline)


def worker_streamcopy(manifest: dict, out: Path) -> None:
    from bench_merge import worker_streamcopy as concat

    concat(manifest, out)


# -- the clips ---------------------------------------------------------------------------


def _render_provider_clip(job_json: str, source_fps: int, path: str) -> float:
    from longvid.providers.preview import render_frames
    from longvid.spec import SegmentJob
    from longvid.testing.provider_clip import encode_provider_style

    started = time.perf_counter()
    job = SegmentJob.model_validate_json(job_json)
    # As a provider makes it: its own frame rate, whole seconds covering the segment and its tail.
    seconds = math.ceil(job.needed_frames / job.fps)
    source = job.model_copy(update={"fps": source_fps, "frames": seconds * source_fps, "tail_frames": 0,
                                    "head_frames": 0, "generate_duration_s": float(seconds)})
    data = encode_provider_style(render_frames(source, None), source_fps, job.width, job.height)
    Path(path).write_bytes(data)
    return time.perf_counter() - started


def _normalise_one(job_json: str, path: str, out: str) -> float:
    from longvid.runtime.normalisation import normalise_segment
    from longvid.spec import SegmentJob

    started = time.perf_counter()
    result = normalise_segment(SegmentJob.model_validate_json(job_json), Path(path).read_bytes(), want_seam=False)
    Path(out).write_bytes(result.mp4)
    return time.perf_counter() - started


def build_jobs(resolution: str, clips: int, seconds: int):
    from bench_merge import build_jobs as six_jobs

    from longvid.spec import RenderSpec

    _spec, jobs = six_jobs()
    spec = RenderSpec(prompt="provider merge benchmark", duration_s=60, resolution=resolution)
    width, height = spec.frame_size
    frames = seconds * spec.fps
    jobs = [j.model_copy(update={"width": width, "height": height, "frames": frames, "generate_duration_s": float(seconds)})
            for j in jobs[:clips]]
    last = jobs[-1]
    jobs[-1] = last.model_copy(update={"tail_frames": 0})
    return spec, jobs


def ensure_clips(cache_root: Path, profile: str, clips: int, seconds: int) -> dict:
    import av

    import longvid.media.normalise
    import longvid.providers.preview
    import longvid.testing.provider_clip

    resolution, source_fps = PROFILES[profile]
    spec, jobs = build_jobs(resolution, clips, seconds)
    key = hashlib.sha256(f"{profile}:{source_fps}".encode())
    for job in jobs:
        key.update(job.model_dump_json().encode())
    for module in (longvid.providers.preview, longvid.testing.provider_clip, longvid.media.normalise):
        key.update(Path(module.__file__).read_bytes())
    key.update(av.__version__.encode())
    folder = cache_root / f"{profile}-{key.hexdigest()[:16]}"
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file():
        print(f"clips: cached in {folder}")
        return _normalised(json.loads(manifest_path.read_text()), folder, jobs)
    folder.mkdir(parents=True, exist_ok=True)
    from concurrent.futures import ProcessPoolExecutor

    paths = [folder / f"provider-{j.index:02d}.mp4" for j in jobs]
    normalised = [folder / f"normalised-{j.index:02d}.mp4" for j in jobs]
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    started = time.perf_counter()
    print(f"clips: encoding {len(jobs)} provider-style clips {jobs[0].width}x{jobs[0].height} @ {source_fps} fps on {workers} processes ...",
          flush=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_render_provider_clip, [j.model_dump_json() for j in jobs], [source_fps] * len(jobs), [str(p) for p in paths]))
    print(f"clips: made in {time.perf_counter() - started:.1f} s", flush=True)
    width, height = spec.frame_size
    manifest = {
        "profile": profile, "fps": spec.fps, "width": width, "height": height, "source_fps": source_fps,
        "clips": [{"path": str(p), "job": j.model_dump_json(), "frames": j.frames, "head_frames": j.head_frames,
                   "head_transition": j.head_transition.value, "tail_frames": j.tail_frames,
                   "rendered_frames": math.ceil(j.needed_frames / j.fps) * source_fps}
                  for p, j in zip(paths, jobs)],
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return _normalised(manifest, folder, jobs)


def _normalised(manifest: dict, folder: Path, jobs) -> dict:
    """Each clip normalised as the runtime does while the others generate, cached by the
    normalisation's own sources (a change of preset normalises them again, not the clips)."""
    import longvid.media.encoding
    import longvid.runtime.normalisation

    key = hashlib.sha256()
    for module in (longvid.media.encoding, longvid.runtime.normalisation):
        key.update(Path(module.__file__).read_bytes())
    normalised_manifest = folder / f"normalised-{key.hexdigest()[:12]}.json"
    if normalised_manifest.is_file():
        return json.loads(normalised_manifest.read_text())
    print("clips: normalising each (the work done while the others generate) ...", flush=True)
    paths = [Path(c["path"]) for c in manifest["clips"]]
    normalised = [folder / f"normalised-{key.hexdigest()[:12]}-{j.index:02d}.mp4" for j in jobs]
    # One at a time, each on the whole machine, as a task would run while the others wait on the provider.
    manifest = dict(manifest, normalise_s=[_normalise_one(j.model_dump_json(), str(p), str(n)) for j, p, n in zip(jobs, paths, normalised)],
                    clips=[dict(c, normalised=str(n)) for c, n in zip(manifest["clips"], normalised)], file=str(normalised_manifest))
    normalised_manifest.write_text(json.dumps(manifest, indent=1))
    return manifest


def _cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def preset_quality(manifest: dict) -> str:
    """The last clip normalised with the merge's preset and with the normalising one: CPU
    seconds, bytes and luma PSNR against the provider's decoded frames (streamed: a frame of
    each at a time, so this process's peak RSS, which its children inherit in ru_maxrss, stays low)."""
    import io

    import av
    import numpy as np

    from longvid.media.encoding import DEFAULT_H264, NORMALISE_H264
    from longvid.media.normalise import normalise_clip
    from longvid.runtime.normalisation import house_format

    clip = manifest["clips"][-1]
    job, data = _job(clip), Path(clip["path"]).read_bytes()

    def luma(source: bytes):
        with av.open(io.BytesIO(source)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="yuv420p")[: job.height].astype(np.float64)

    parts = []
    for settings in (DEFAULT_H264, NORMALISE_H264):
        fmt = dataclasses.replace(house_format(job), settings=settings)
        cpu = _cpu_s()
        out = normalise_clip(data, fmt)
        cpu = _cpu_s() - cpu
        psnr = ""
        if manifest["fps"] == manifest["source_fps"]:  # frame k is the provider's frame k
            mse = [np.mean((a - b) ** 2) for a, b in zip(luma(data), luma(out))]
            psnr = f", Y-PSNR {10 * np.log10(255**2 / np.mean(mse)):.2f} dB vs the provider's frames"
        parts.append(f"{settings.preset} crf {settings.crf}: {cpu:.2f} s CPU, {len(out) / 1e6:.2f} MB{psnr}")
    return "normalising the last clip: " + "; ".join(parts)


# -- main --------------------------------------------------------------------------------


def run_profile(args, profile: str) -> list[list[str]]:
    from longvid.media import probe

    manifest = ensure_clips(args.cache_dir, profile, args.clips, args.seconds)
    clips = manifest["clips"]
    manifest_file = Path(manifest["file"])  # the clips and their normalised versions
    expected = sum(c["frames"] for c in clips)
    print(f"{profile}: {len(clips)} clips {manifest['width']}x{manifest['height']}, provider {manifest['source_fps']} fps -> "
          f"{manifest['fps']} fps, {expected} output frames; normalising each took {', '.join(f'{s:.2f}' for s in manifest['normalise_s'])} s")
    outdir = Path(tempfile.mkdtemp(prefix="longvid-bench-provider-merge-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(BENCH), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    results: dict[str, dict] = {}
    for round_ in range(args.repeat):
        for m in args.methods:
            if (m == "r" and round_ >= args.raw_repeat) or (m == "x" and round_ >= args.xfade_repeat):
                continue
            worker = METHODS[m][1] + ("-cli" if m == "x" and args.ffmpeg_cli else "")
            out = outdir / f"{m}.mp4"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", worker, "--manifest", str(manifest_file), "--out", str(out)]
            measured = run_measured(cmd, cwd=str(ROOT), env=env, timeout=1800, interval=0.05)
            if measured.returncode != 0:
                print(f"  ({m}) FAILED: {(measured.stderr.strip().splitlines() or ['?'])[-1]}", flush=True)
                continue
            report = json.loads(measured.stdout.strip().splitlines()[-1])
            peak = max(measured.tree.peak_rss, measured.maxrss_bytes, report["maxrss_self"])
            cpu = f", CPU {report['op_cpu_s']:.2f} s" if 'op_cpu_s' in report else ''
            print(f"  ({m}) round {round_ + 1}: {report['op_s']:.2f} s{cpu}, peak {peak / MB:.0f} MB", flush=True)
            best = results.get(m)
            if best is None or report["op_s"] < best["rep"]["op_s"]:
                results[m] = {"rep": report, "peak": peak, "info": probe(out)}
    rows = []
    base = results.get("a")
    for m in args.methods:
        if m not in results:
            rows.append([profile, f"({m})", METHODS[m][0], "failed"] + ["-"] * 7)
            continue
        r = results[m]
        ratio = f"{r['rep']['op_s'] / base['rep']['op_s']:.1f}" if base else "-"
        detail = ""
        if m in "awo":
            rep = r["rep"]
            detail = (f"normalise {rep['normalise_last_s']:.2f} s + merge {rep['merge_s']:.2f} s "
                      f"(ahead {rep['ahead_s']:.2f} s); copied {rep['copied_frames']}, re-encoded {rep['encoded_frames']}")
        cpu = r["rep"].get("op_cpu_s")
        cpu_ratio = f"{cpu / base['rep']['op_cpu_s']:.1f}" if cpu and base and base["rep"].get("op_cpu_s") else "-"
        rows.append([profile, f"({m})", METHODS[m][0], f"{r['rep']['op_s']:.2f}", ratio,
                     f"{cpu:.2f}" if cpu else "-", cpu_ratio, f"{r['peak'] / MB:.0f}",
                     str(r["info"].frames), "yes" if r["info"].has_audio else "no", detail])
    if base and "x" in results:
        # What no method that re-encodes the late clip can avoid: its normalisation alone.
        floor = base["rep"]["normalise_last_s"]
        xfade = results["x"]["rep"]["op_s"]
        print(f"  bound: normalising the late clip alone took {floor:.2f} s of (a)'s {base['rep']['op_s']:.2f} s; no merge that "
              f"re-encodes it at the house settings on these cores can be more than {xfade / floor:.1f}x faster than (x)'s "
              f"{xfade:.2f} s; (a) is {xfade / base['rep']['op_s']:.1f}x", flush=True)
    if not args.keep:
        shutil.rmtree(outdir, ignore_errors=True)
    if not args.no_quality:  # after the methods: nothing it holds is inherited by their processes
        print(preset_quality(manifest), flush=True)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--manifest", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--profiles", default="720p24,1080p30", help="comma-separated: 720p24, 1080p30 (default %(default)s)")
    ap.add_argument("--methods", default="awoxdr", help="which of a, w, o, r, x, d to run (default %(default)s)")
    ap.add_argument("--no-quality", action="store_true", help="skip the preset comparison (CPU, bytes, PSNR)")
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=10, help="timeline seconds per clip (default %(default)s)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--xfade-repeat", type=int, default=1, help="rounds of (x), a slow one (default %(default)s)")
    ap.add_argument("--raw-repeat", type=int, default=1, help="rounds of (r), a slow one (default %(default)s)")
    ap.add_argument("--ffmpeg-cli", action="store_true", help="run (x) with the ffmpeg binary on PATH")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "longvid-bench-provider-clips")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if args.worker:
        manifest = json.loads(Path(args.manifest).read_text())
        workers = {"last": worker_last, "first": worker_first, "oneshot": worker_oneshot, "raw": worker_raw, "xfade": worker_xfade, "xfade-cli": worker_xfade_cli,
                   "streamcopy": worker_streamcopy}
        workers[args.worker](manifest, Path(args.out))
        return 0
    import av

    print(f"provider merge benchmark: python {sys.version.split()[0]}, PyAV {av.__version__}, {os.cpu_count()} CPUs")
    rows = []
    for profile in args.profiles.split(","):
        rows += run_profile(args, profile.strip())
    print(table(["profile", "", "method", "seconds", "x (a)", "CPU s", "CPU x (a)", "peak RSS MB", "frames", "audio", "(a) detail"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
