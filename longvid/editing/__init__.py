"""Editing a finished run: the edit vocabulary (edits.py) and the pure decision of which
segments an edit regenerates (regeneration.py). The runtime side (versions in the run
folder, the edit run itself) lives in longvid/runtime/versions.py and runtime/edit_run.py."""

from .edits import Edit, EditRequest, LockEdit, RegenerateEdit, ReplaceEdit, SceneEdit, UnlockEdit, apply_scene_edits, parse_edit_request
from .regeneration import Decision, RegenerationPlan, plan_regeneration

__all__ = ["Decision", "Edit", "EditRequest", "LockEdit", "RegenerateEdit", "RegenerationPlan", "ReplaceEdit", "SceneEdit",
           "UnlockEdit", "apply_scene_edits", "parse_edit_request", "plan_regeneration"]
