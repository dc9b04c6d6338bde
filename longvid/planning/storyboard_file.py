"""Reading a user's storyboard file (JSON or YAML) instead of planning one."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..errors import InputError, describe_validation_error
from ..spec import Storyboard


def load_storyboard(path: Path, prompt: str = "") -> Storyboard:
    """Parse and validate a storyboard file. Accepts a full storyboard object or a bare
    list of scenes; refuses anything else with the file name and the field at fault."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read storyboard file {path}: {exc.__class__.__name__}") from None
    try:
        data = json.loads(text) if Path(path).suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise InputError(f"storyboard file {path} is not valid JSON/YAML: {first_line}") from None
    if isinstance(data, list):
        data = {"scenes": data}
    if not isinstance(data, dict):
        raise InputError(f"storyboard file {path} must hold an object with 'scenes' or a list of scenes")
    data.setdefault("title", Path(path).stem)
    data.setdefault("prompt", prompt)
    data["planner"] = "storyboard-file"
    try:
        return Storyboard.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"storyboard file {path}: {describe_validation_error(exc)}") from None
