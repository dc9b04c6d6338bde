"""Drift benchmark: labelled clips with known drifts and clean controls, judged by each backend.

    python bench/bench_drift.py                 # drift table + gradual walk + 45 s render overhead
    python bench/bench_drift.py --no-render     # without the render timing

Clips (longvid/testing/drift_clips.py, preview renderer + numpy, 256x144 at 12 fps): for every
segment that continues its scene (so it has a scene anchor and a seam) in two planned videos,
one clean control and one clip per drift kind: palette, lighting, subject_swap (another shape
in the subject's own colours), cut (a hard cut inside the segment), flicker, shake; and per
video one more clean control: a 3 px/frame pan over fine texture at 640x360 (libx264). Each is
judged as the pipeline would: anchors = its scene's first frame, seam = the previous
segment's tail. Plus a gradual walk: six segments of one scene whose palette moves 5% of the
way to another palette per segment (30% in all), against six clean ones: caught when any
segment of the walk fails.

Backends:
  structural            the weight-free scorer as it was (anchor + seam; no temporal, no drift)
  structural+temporal   plus the weight-free temporal metrics and the long-range drift check
  gemini (fake)         the vision judge against the local fake, whose verdicts are SCRIPTED
                        (fail for drifted clips, pass for clean): its recall and false alarms
                        say nothing about Gemini's eyes, only that the plumbing works; its time
                        and money per segment are real client-side figures at the fake's token
                        counts and the published price table
  clip                  only when CLIP weights are on this machine (never downloaded)

Then the weight-free metrics' cost on a 45 s preview render (360p, in-process runner, the
structural judge): wall time with the temporal metrics on and off, one run each, and the
judge's own seconds from the manifest.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from longvid.consistency import ConsistencyJudge, JudgeConfig, decode_frames, tail_frames  # noqa: E402
from longvid.testing import drift_clips as dc  # noqa: E402

KINDS = ["palette", "lighting", "subject_swap", "cut", "flicker", "shake"]
PROMPTS = ["a red fox explores a snowy forest at dawn", "a lighthouse keeper walks the cliff at night"]


def cases(folder: Path):
    """[(label, job, mp4 path, anchor frame, previous tail)] for clean and drifted clips."""
    out, controls = [], {}
    for p, prompt in enumerate(PROMPTS):
        jobs = dc.tiny_jobs(prompt, duration_s=40, width=256, height=144, scenes=2)
        clean = {j.index: dc.mp4(j, dc.clean(j)) for j in jobs}
        for job in jobs:
            if job.segment_in_scene == 0 or not job.scene.characters:
                continue
            controls.setdefault(p, job)
            opener = next(j for j in jobs if j.scene_index == job.scene_index and j.segment_in_scene == 0)
            anchor = decode_frames(clean[opener.index], [0])[0]
            previous = jobs[job.index - 1]
            tail = tail_frames(clean[previous.index], previous.frames, 3)
            for label in ["clean", *KINDS]:
                data = clean[job.index] if label == "clean" else dc.mp4(job, dc.DRIFTS[label](job))
                path = folder / f"p{p}-s{job.index}-{label}.mp4"
                path.write_bytes(data)
                out.append((label, job, path, anchor, tail))
    # Clean controls of real footage's kind, one per prompt: a textured pan encoded at 360p
    # (judged against its own first frame, no seam).
    for p, job in controls.items():
        pan_job = job.model_copy(update={"width": 640, "height": 360, "frames": 48})
        pan = dc.mp4(pan_job, dc.textured_pan(pan_job))
        (folder / f"p{p}-pan.mp4").write_bytes(pan)
        out.append(("clean", pan_job, folder / f"p{p}-pan.mp4", decode_frames(pan, [0])[0], None))
    return out


def judge_local(config: JudgeConfig, items):
    judge = ConsistencyJudge(config)
    results = []
    for label, job, path, anchor, tail in items:
        t = time.perf_counter()
        scores = judge.score_segment(path, job, [anchor], tail, job.prompt)
        results.append((label, not scores.passed, time.perf_counter() - t, 0.0))
    return judge.backend, results


def judge_gemini(items):
    from pydantic import SecretStr

    from longvid.consistency.gemini_judge import GeminiVisionJudge
    from longvid.consistency.vision_check import VisionCheck
    from longvid.settings import GeminiSettings
    from longvid.testing.fake_gemini_judge import PASSING, start_fake_gemini_judge

    failing = {**PASSING, "passed": False, "character": 0.3, "reasons": ["scripted failure"], "adjustments": ["scripted"]}
    server = start_fake_gemini_judge()
    try:
        check = VisionCheck(GeminiVisionJudge(GeminiSettings(api_key=SecretStr(server.api_key), base_url=server.url)), mode="primary")
        check.review(items[0][1], items[0][2], None, [])  # warm-up: google-genai's import and first client
        results = []
        for label, job, path, anchor, _tail in items:
            server.fake.script(PASSING if label == "clean" else failing)
            check.anchors[job.scene_index] = anchor
            before = sum(e.committed_usd for e in check.ledger.entries)
            t = time.perf_counter()
            vision, why = check.review(job, path, None, [])
            seconds = time.perf_counter() - t
            if vision is None:
                raise SystemExit(f"the fake did not answer: {why}")
            results.append((label, not vision.passed, seconds, sum(e.committed_usd for e in check.ledger.entries) - before))
    finally:
        server.stop()
    return "gemini (fake, scripted)", results


def table(name, results):
    clean = [r for r in results if r[0] == "clean"]
    false_alarms = sum(r[1] for r in clean)
    row = [f"{name:<24}", f"false alarms {false_alarms}/{len(clean)}"]
    for kind in KINDS:
        drifted = [r for r in results if r[0] == kind]
        row.append(f"{kind} {sum(r[1] for r in drifted)}/{len(drifted)}")
    drifted = [r for r in results if r[0] != "clean"]
    recall = sum(r[1] for r in drifted) / max(1, len(drifted))
    seconds = sum(r[2] for r in results) / len(results)
    money = sum(r[3] for r in results) / len(results)
    print(" | ".join(row))
    print(f"{'':<24} recall {recall:.0%}, false-alarm rate {false_alarms / max(1, len(clean)):.0%}, "
          f"{seconds * 1000:.0f} ms and ${money:.5f} per segment")


def gradual(folder: Path):
    from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
    from longvid.consistency.config import STRUCTURAL_THRESHOLDS

    jobs = dc.tiny_jobs(duration_s=36, width=256, height=144, scenes=1)[:6]
    end = dc.blend_palette(jobs[0].scene.color_palette, dc.DRIFT_PALETTE, 0.3)
    walks = {"clean": [dc.clean(j) for j in jobs], "gradual": dc.gradual_drift(jobs, end)}
    paths = {}
    for label, clips in walks.items():
        for job, frames in zip(jobs, clips):
            paths[label, job.index] = folder / f"walk-{label}-{job.index}.mp4"
            paths[label, job.index].write_bytes(dc.mp4(job, frames))
    before = JudgeConfig(backend="structural", temporal=False,
                         structural_thresholds=STRUCTURAL_THRESHOLDS.model_copy(update={"drift": None}))
    print("\ngradual drift: six segments of one scene, 5% of the way to another palette per segment")
    for name, config in (("structural", before), ("structural+temporal", JudgeConfig(backend="structural"))):
        for label in ("clean", "gradual"):
            judge = ConsistencySegmentJudge(config)
            previous, flagged = None, []
            for job in jobs:
                verdict = judge.judge(job, paths[label, job.index], previous)
                if not verdict.passed:
                    flagged.append(f"{job.index} ({verdict.reason.split(' ', 1)[0]})")
                previous = (job, paths[label, job.index])
            print(f"  {name:<22} {label:<8} flagged segments: {', '.join(flagged) or 'none'}")


def render_overhead(folder: Path) -> None:
    from longvid.consistency import FramePackCompressor
    from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
    from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
    from longvid.runtime.store import read_manifest
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn", duration_s=45, resolution="360p")
    print("\n45 s preview render at 360p (in-process runner, structural judge), one run each:")
    walls = {}
    for temporal in (False, True):
        judge = ConsistencySegmentJudge(JudgeConfig(backend="structural", temporal=temporal), context=FramePackCompressor(device="cpu"))
        store = LocalRunStore(folder / f"store-{temporal}")
        t = time.perf_counter()
        result = RenderPipeline(store, InlineSegmentRunner(), judge=judge).render(spec)
        walls[temporal] = time.perf_counter() - t
        manifest = read_manifest(store.open(result.run_id))
        judged = sum(a.seconds for s in manifest.segments for a in s.scores)
        print(f"  temporal metrics {'on ' if temporal else 'off'}: wall {walls[temporal]:.1f} s, judge {judged:.2f} s "
              f"over {len(manifest.segments)} segments")
    print(f"  ratio on/off: {walls[True] / walls[False]:.3f} (target <= 1.05; one run each on a shared machine)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-render", action="store_true", help="skip the 45 s render timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        items = cases(folder)
        print(f"{sum(1 for i in items if i[0] == 'clean')} clean controls, "
              f"{sum(1 for i in items if i[0] != 'clean')} drifted clips ({len(KINDS)} kinds), 256x144 at 12 fps\n")
        table(*judge_local(JudgeConfig(backend="structural", temporal=False), items))
        table("structural+temporal", judge_local(JudgeConfig(backend="structural"), items)[1])
        clip = ConsistencyJudge(JudgeConfig(backend="auto"))
        if clip.backend == "clip":
            table(*judge_local(JudgeConfig(backend="clip"), items))
        else:
            print(f"{'clip':<24} not measured: {clip.notes}")
        table(*judge_gemini(items))
        gradual(folder)
        if not args.no_render:
            render_overhead(folder)


if __name__ == "__main__":
    main()
