"""The speak step for a 60 s and a 600 s video: the offline planner's narration spoken by
espeak-ng, timed, and written to a run folder (speech/ clips, narration.wav, .srt, .vtt).

    python bench/bench_narration.py                # 60 s and 600 s
    python bench/bench_narration.py --lengths 30 120

Per length: phrases, seconds to plan (offline), to speak (synthesis and timing), to cut the
segments inside the scene lengths, to write the run folder's narration files, and the
Python heap's peak during the step (tracemalloc: numpy buffers included).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc


def measure(seconds: float) -> dict:
    from longvid.manifest import RunManifest
    from longvid.planning import OfflinePlanner
    from longvid.planning.segmentation import segment_storyboard
    from longvid.runtime.narration_step import speak_storyboard, write_narration
    from longvid.runtime.store import LocalRunStore
    from longvid.settings import Settings
    from longvid.spec import RenderSpec

    spec = RenderSpec(prompt="a red fox explores a snowy forest at dawn. it finds a frozen river; then it sleeps.",
                      duration_s=seconds, resolution="360p")
    figures: dict = {"video_s": seconds}
    t = time.perf_counter()
    board = OfflinePlanner().plan(spec)
    figures["plan_s"] = time.perf_counter() - t
    tracemalloc.start()
    t = time.perf_counter()
    spoken, warnings = speak_storyboard(spec, board, Settings(), None)
    figures["speak_s"] = time.perf_counter() - t
    t = time.perf_counter()
    jobs = segment_storyboard(board, spec, scene_frames=spoken.timing.scene_frames)
    figures["segment_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as folder:
        run = LocalRunStore(folder).create("bench")
        t = time.perf_counter()
        write_narration(run, RunManifest(run_id="bench", spec=spec, segments=[]), spoken.record, spoken.clips, None, Settings())
        figures["write_s"] = time.perf_counter() - t
    figures["peak_heap_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    figures.update(scenes=len(board.scenes), segments=len(jobs), phrases=len(spoken.record.phrases),
                   total_s=spoken.timing.total_s, stretched=spoken.timing.stretched, warnings=warnings)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=float, nargs="+", default=[60.0, 600.0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(s) for s in args.lengths]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'video':>7} {'scenes':>6} {'phrases':>7} {'plan':>7} {'speak':>7} {'segment':>8} {'write':>7} {'peak heap':>10}")
    for r in rows:
        print(f"{r['video_s']:>6.0f}s {r['scenes']:>6} {r['phrases']:>7} {r['plan_s']:>6.3f}s {r['speak_s']:>6.3f}s "
              f"{r['segment_s']:>7.4f}s {r['write_s']:>6.3f}s {r['peak_heap_mb']:>8.1f}MB"
              + ("  (stretched)" if r["stretched"] else ""))


if __name__ == "__main__":
    main()
