"""`longvid edit RUN …` and `longvid history RUN`: flags into an EditRequest, the edit's
estimate before anything is paid, and the run's versions. The edit itself runs through the
same Ray pipeline as a render (cli._run_pipeline)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import InputError
from .spec import CameraMove, Lighting


def add_edit_parsers(sub, store_argument, ray_arguments, planner_argument) -> None:
    edit = sub.add_parser("edit", help="edit a finished run into its next version: change a scene, regenerate, replace or lock segments")
    edit.add_argument("run_id", help="a run id, or the run folder's path")
    edit.add_argument("--scene", type=int, default=None, help="the scene to change (numbered from 1, as `longvid plan` shows)")
    edit.add_argument("--text", default=None, help="the scene's new description")
    edit.add_argument("--camera", choices=[c.value for c in CameraMove], default=None, help="the scene's new camera movement")
    edit.add_argument("--lighting", choices=[v.value for v in Lighting], default=None, help="the scene's new lighting")
    edit.add_argument("--narration", default=None, help="the scene's new voice-over text (runs with --narration auto)")
    edit.add_argument("--regenerate", type=int, action="append", default=[], metavar="SEG",
                      help="make segment SEG again with a new seed (segments numbered from 0, as `longvid status` shows)")
    edit.add_argument("--seed", type=int, default=None, help="the seed for --regenerate (default: a new one derived from the version)")
    edit.add_argument("--replace", nargs=2, action="append", default=[], metavar=("SEG", "FILE"),
                      help="put your own clip FILE in place of segment SEG (fitted to its length and size)")
    edit.add_argument("--lock", type=int, nargs="+", default=[], metavar="SEG", help="never regenerate these segments (judge included)")
    edit.add_argument("--unlock", type=int, nargs="+", default=[], metavar="SEG", help="allow these segments to be regenerated again")
    edit.add_argument("--budget", type=float, default=None, help="USD cap for this edit alone (default: the run's budget)")
    edit.add_argument("-y", "--yes", action="store_true", help="pay for a paid edit without asking")
    edit.add_argument("--estimate", action="store_true", help="print what the edit would regenerate and cost, and stop")
    edit.add_argument("-o", "--output", type=Path, default=None, help="also copy the new version's MP4 here")
    edit.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    store_argument(edit)
    ray_arguments(edit)
    planner_argument(edit)

    history = sub.add_parser("history", help="list a run's versions: what each edit changed, regenerated and cost")
    history.add_argument("run_id", help="a run id, or the run folder's path")
    store_argument(history)
    history.add_argument("--json", action="store_true")


def cmd_edit(args: argparse.Namespace) -> int:
    """Check the edit and show its estimate before anything is paid, then render the new version."""
    from .cli import _open_store, _options, _run_pipeline  # late: cli imports this module
    from .runtime.edit_run import prepare_edit, run_edit, set_locks
    from .wiring import check_vision_judge, planning_pipeline

    request = edit_request_from(args)
    if args.output is not None and args.output.suffix.lower() != ".mp4":
        raise InputError(f"output {args.output} must end in .mp4")
    prepared = prepare_edit(planning_pipeline(_open_store(args), _options(args), args.settings), args.run_id, request,
                            estimate_only=args.estimate)
    print(f"longvid: {describe(prepared)}", file=sys.stderr)
    for warning in prepared.warnings:
        print(f"longvid: warning: {warning}", file=sys.stderr)
    if args.estimate:
        if args.json:
            print(json.dumps(prepared.summary(), indent=2))
        return 0
    if not prepared.new_version:
        history = set_locks(planning_pipeline(_open_store(args), _options(args), args.settings), prepared)
        if args.json:
            print(json.dumps({"run_id": args.run_id, "locked": history.locked}))
        return 0
    confirm_paid(prepared, args.yes)
    from .runtime.store import read_manifest

    spec = read_manifest(_open_store(args).open(args.run_id)).spec
    check_vision_judge(spec, _options(args), args.settings)
    return _run_pipeline(args, spec, lambda p: run_edit(p, prepared, output=args.output))


def cmd_history(args: argparse.Namespace) -> int:
    from .cli import _open_store
    from .runtime.store import read_manifest
    from .runtime.versions import current_history, pending_edit, read_history

    run = _open_store(args).open(args.run_id)
    print_history(current_history(run, read_manifest(run)), pending_edit(run, read_history(run)), args.json)
    return 0


def edit_request_from(args: argparse.Namespace):
    """The flags as one EditRequest (InputError, exit 2, for anything malformed)."""
    from .editing import parse_edit_request

    edits: list[dict] = []
    scene_fields = {"text": args.text, "camera": args.camera, "lighting": args.lighting, "narration": args.narration}
    given = {k: v for k, v in scene_fields.items() if v is not None}
    if args.scene is not None:
        edits.append({"kind": "scene", "scene": args.scene, **given})
    elif given:
        raise InputError(f"--{next(iter(given))} needs --scene N (the scene to change)")
    if args.seed is not None and len(args.regenerate) != 1:
        raise InputError("--seed goes with exactly one --regenerate SEG")
    edits += [{"kind": "regenerate", "segment": s, "seed": args.seed} for s in args.regenerate]
    for segment, clip in args.replace:
        if not segment.isdigit():
            raise InputError(f"--replace SEG FILE: {segment!r} is not a segment number")
        edits.append({"kind": "replace", "segment": int(segment), "clip": clip})
    if args.lock:
        edits.append({"kind": "lock", "segments": args.lock})
    if args.unlock:
        edits.append({"kind": "unlock", "segments": args.unlock})
    if not edits:
        raise InputError("say what to edit: --scene N with --text/--camera/--lighting/--narration, --regenerate SEG, "
                         "--replace SEG FILE, --lock SEG or --unlock SEG")
    return parse_edit_request({"edits": edits, "budget_usd": args.budget}, "edit")


def describe(prepared) -> str:
    s = prepared.summary()
    cost = s["estimated_cost"]
    bounds = f"${cost['low_usd']:.2f}" + (f" to ${cost['high_usd']:.2f}" if cost["high_usd"] > cost["low_usd"] else "")
    what = [f"regenerate {s['regenerate'] or 'nothing'}"]
    if s["replace"]:
        what.append(f"replace {s['replace']}")
    what.append(f"keep {s['keep']}")
    if s["locked"]:
        what.append(f"locked {s['locked']}")
    head = f"edit v{s['version']} of {s['run_id']}" if s["version"] else f"locks of {s['run_id']}"
    return f"{head}: {', '.join(what)}; estimated cost {bounds}"


def confirm_paid(prepared, yes: bool) -> None:
    """A paid edit goes ahead with --yes, or when the user says so at a terminal."""
    high = prepared.estimate.high_usd
    if high <= 0 or yes:
        return
    if not sys.stdin.isatty():
        raise InputError(f"this edit may cost up to ${high:.2f}; rerun with --yes to pay for it")
    answer = input(f"this edit may cost up to ${high:.2f}; go ahead? [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        raise InputError("edit not started")


def print_history(history, pending, as_json: bool) -> None:
    if as_json:
        data = history.model_dump(mode="json")
        data["pending"] = pending.model_dump(mode="json", include={"version", "stage"}) if pending else None
        print(json.dumps(data, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{history.run_id}: {len(history.versions)} version(s)" + (f", locked {history.locked}" if history.locked else ""))
    for column in ("version", "created", "edits", "regenerated", "reused", "replaced", "cost"):
        table.add_column(column)
    for v in history.versions:
        edits = "; ".join(_edit_text(e) for e in v.edits) or "original render"
        table.add_row(f"v{v.version}", v.created_at[:19], edits, str(v.regenerated), str(v.reused), str(v.replaced or ""),
                      f"${v.cost_usd:.2f}")
    Console(highlight=False).print(table)
    if pending is not None:
        print(f"v{pending.version} is being made ({pending.stage.value}); finish it with: longvid resume {history.run_id}")


def _edit_text(edit: dict) -> str:
    kind = edit["kind"]
    if kind == "scene":
        changes = ", ".join(f"{k}={edit[k]!r}" for k in ("text", "camera", "lighting", "narration") if edit.get(k) is not None)
        return f"scene {edit['scene']}: {changes}"
    if kind == "regenerate":
        return f"regenerate {edit['segment']}" + (f" (seed {edit['seed']})" if edit.get("seed") is not None else "")
    if kind == "replace":
        return f"replace {edit['segment']} with {Path(edit['clip']).name}"
    return f"{kind} {edit['segments']}"
