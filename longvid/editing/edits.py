"""What a user may change in a finished run, as typed, validated values.

Scenes are numbered from 1 (as `longvid plan` shows them), segments from 0 (as `longvid
status` and the manifest show them). Every edit is checked against the run it applies to
(`check_against`) before anything is paid, with a one-line error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from ..errors import InputError, describe_validation_error
from ..spec import MAX_NARRATION_CHARS, CameraMove, Lighting, Storyboard


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SceneEdit(_Edit):
    """Change what one scene shows or says; its segments are made again."""

    kind: Literal["scene"] = "scene"
    scene: Annotated[int, Field(ge=1)]  # 1-based
    text: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    camera: CameraMove | None = None
    lighting: Lighting | None = None
    narration: Annotated[str, Field(max_length=MAX_NARRATION_CHARS)] | None = None

    @model_validator(mode="after")
    def _changes_something(self):
        if self.text is None and self.camera is None and self.lighting is None and self.narration is None:
            raise ValueError(f"scene {self.scene}: say what to change (text, camera, lighting or narration)")
        return self


class RegenerateEdit(_Edit):
    """Make one segment again with another seed (given, or derived from the version number)."""

    kind: Literal["regenerate"] = "regenerate"
    segment: Annotated[int, Field(ge=0)]
    seed: Annotated[int, Field(ge=0, lt=2**31)] | None = None


class ReplaceEdit(_Edit):
    """Put the user's own clip in place of one segment (fitted to its length and size)."""

    kind: Literal["replace"] = "replace"
    segment: Annotated[int, Field(ge=0)]
    clip: Path


class LockEdit(_Edit):
    """Never regenerate these segments (no edit, chain or judge touches them) until unlocked."""

    kind: Literal["lock"] = "lock"
    segments: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


class UnlockEdit(_Edit):
    kind: Literal["unlock"] = "unlock"
    segments: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=1)]


Edit = Annotated[SceneEdit | RegenerateEdit | ReplaceEdit | LockEdit | UnlockEdit, Field(discriminator="kind")]


class EditRequest(BaseModel):
    """One edit of a run: any number of changes, made together into one new version."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    edits: Annotated[list[Edit], Field(min_length=1, max_length=64)]
    budget_usd: Annotated[float, Field(gt=0)] | None = None  # the edit's own cap (None: the run's budget)

    @property
    def locks(self) -> set[int]:
        return {i for e in self.edits if isinstance(e, LockEdit) for i in e.segments}

    @property
    def unlocks(self) -> set[int]:
        return {i for e in self.edits if isinstance(e, UnlockEdit) for i in e.segments}

    @property
    def reseeds(self) -> dict[int, int | None]:
        return {e.segment: e.seed for e in self.edits if isinstance(e, RegenerateEdit)}

    @property
    def replacements(self) -> dict[int, Path]:
        return {e.segment: e.clip for e in self.edits if isinstance(e, ReplaceEdit)}

    @property
    def changes_video(self) -> bool:
        """False when the request only locks or unlocks (no new version is made)."""
        return any(not isinstance(e, (LockEdit, UnlockEdit)) for e in self.edits)

    def check_against(self, segment_count: int, scene_count: int, narration_on: bool, locked: set[int]) -> None:
        """Refuse edits that do not fit this run, in one line each."""
        both = self.locks & self.unlocks
        if both:
            raise InputError(f"segment(s) {sorted(both)} are both locked and unlocked in one edit")
        named = [*self.locks, *self.unlocks, *self.reseeds, *self.replacements]
        outside = sorted({i for i in named if i >= segment_count})
        if outside:
            raise InputError(f"segment(s) {outside} do not exist: this run has segments 0 to {segment_count - 1}")
        twice = sorted(i for i in self.reseeds if i in self.replacements)
        if twice:
            raise InputError(f"segment(s) {twice} are both regenerated and replaced in one edit; pick one")
        for edit in self.edits:
            if isinstance(edit, SceneEdit):
                if edit.scene > scene_count:
                    raise InputError(f"scene {edit.scene} does not exist: this run has scenes 1 to {scene_count}")
                if edit.narration is not None and not narration_on:
                    raise InputError("this run was rendered without planned narration (--narration off or a narration file); "
                                     "a narration edit needs --narration auto")
        still_locked = (locked | self.locks) - self.unlocks
        touched = sorted(i for i in (*self.reseeds, *self.replacements) if i in still_locked)
        if touched:
            raise InputError(f"segment(s) {touched} are locked; unlock them first (--unlock {' '.join(map(str, touched))})")


    def check_segment_count(self, old_count: int, new_count: int, locked: set[int]) -> None:
        """Segment numbers are checked against the run's segments and applied to the edited
        plan's: refuse an edit that changes how many there are while any is locked or named."""
        named = sorted({*self.locks, *self.unlocks, *self.reseeds, *self.replacements, *locked})
        if new_count != old_count and named:
            raise InputError(f"this edit changes the number of segments ({old_count} to {new_count}), so segment "
                             f"number(s) {named} would name other segments; unlock them and edit the scenes on their own")


_EDIT_LIST = TypeAdapter(list[Edit])


def parse_edit_request(data: object, where: str = "edit") -> EditRequest:
    """An EditRequest from JSON-like data (a batch line's `edits`, an HTTP body), or one
    clear InputError."""
    if isinstance(data, list):
        data = {"edits": data}
    try:
        return EditRequest.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where}: {describe_validation_error(exc)}") from None


def apply_scene_edits(storyboard: Storyboard, request: EditRequest) -> Storyboard:
    """The storyboard with the request's scene changes made (pure; later edits of the same
    scene win field by field)."""
    scenes = list(storyboard.scenes)
    for edit in request.edits:
        if not isinstance(edit, SceneEdit):
            continue
        changes: dict[str, object] = {}
        if edit.text is not None:
            changes["description"] = edit.text
        if edit.camera is not None:
            changes["camera_movement"] = edit.camera
        if edit.lighting is not None:
            changes["lighting"] = edit.lighting
        if edit.narration is not None:
            changes["narration"] = edit.narration.strip()
        scenes[edit.scene - 1] = scenes[edit.scene - 1].model_copy(update=changes)
    return storyboard.model_copy(update={"scenes": scenes})
