"""Render every spec in a JSONL file on the Ray cluster this job runs in.

    ray job submit --working-dir . -- python jobs/batch_render.py specs.jsonl --out-dir renders

Each line is a RenderSpec as JSON (e.g. {"prompt": "…", "duration_s": 30}). Writes
renders/<line>.mp4 and renders/summary.json; exits non-zero when any render failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from longvid.errors import LongvidError, describe_validation_error
from longvid.runtime import LocalRunStore, RaySegmentRunner, RenderPipeline, ensure_ray
from longvid.spec import RenderSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", type=Path, help="JSONL file, one RenderSpec per line")
    parser.add_argument("--out-dir", type=Path, default=Path("renders"))
    args = parser.parse_args(argv)

    ensure_ray()
    pipeline = RenderPipeline(LocalRunStore(args.out_dir / "runs"), RaySegmentRunner())
    rows = []
    for number, line in enumerate(args.specs.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        started = time.perf_counter()
        row = {"line": number, "status": "failed"}
        try:
            spec = RenderSpec.model_validate_json(line)
            result = pipeline.render(spec, output=args.out_dir / f"{number:04d}.mp4")
            row.update(status="done", output=result.output, duration_s=result.duration_s, cost_usd=result.cost_usd, run_id=result.run_id)
        except ValidationError as exc:
            row["error"] = describe_validation_error(exc)
        except LongvidError as exc:
            row["error"] = str(exc)
        row["wall_s"] = round(time.perf_counter() - started, 2)
        rows.append(row)
        print(f"{number:4d} {row['status']:7s} {row['wall_s']:8.1f}s {row.get('output') or row.get('error')}", flush=True)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "summary.json").write_text(json.dumps(rows, indent=2))
    failed = sum(1 for r in rows if r["status"] != "done")
    print(f"{len(rows) - failed} done, {failed} failed; summary in {args.out_dir / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
