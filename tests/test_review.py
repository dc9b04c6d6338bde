"""Contact sheets and HTML reports, checked against a real render: thumbnails are compared
with the frames decoded from each segment's own file, the regenerated segment is marked,
and user text in the report is escaped."""

from __future__ import annotations

import base64
import html.parser
import io
from itertools import pairwise

import numpy as np
import pytest
from provider_doubles import drifting_provider
from PIL import Image

from longvid.consistency import FramePackCompressor, JudgeConfig
from longvid.consistency.keyframes import decode_frames
from longvid.consistency.pipeline_judge import ConsistencySegmentJudge
from longvid.manifest import RunPlan, RunStatus, reset, transition
from longvid.providers import registry
from longvid.review import (
    CONTACT_SHEET,
    REPORT_HTML,
    SheetLayout,
    keyframe_indices,
    report_html,
    summarise,
    write_review,
)
from longvid.review.contact_sheet import (
    FAIL,
    PASS,
    PLACEHOLDER,
    REGENERATED,
    draw_contact_sheet,
    fit_lines,
    load_font,
)
from longvid.review.layout import thumbnail_size
from longvid.runtime import InlineSegmentRunner, LocalRunStore, RenderPipeline
from longvid.runtime.store import PLAN, read_manifest
from longvid.spec import RenderSpec, SegmentState

HOSTILE_PROMPT = 'a red fox <script>alert("pwned")</script> & "friends" explore a snowy forest'


DriftingProvider = drifting_provider("review-drifting")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One real render (fps 12, 360p, 16 s) in which one segment is regenerated once."""
    saved = dict(registry._FACTORIES)
    registry.register_provider("review-drifting", DriftingProvider.capabilities, lambda settings: DriftingProvider())
    try:
        spec = RenderSpec(prompt=HOSTILE_PROMPT, duration_s=16, fps=12, resolution="360p", provider="review-drifting")
        jobs = RenderPipeline().plan(spec).jobs
        target = next(j for j in jobs if j.segment_in_scene == 1)  # inside a scene: anchored and seamed
        DriftingProvider.drift_at = {target.index: target.seed}
        judge = ConsistencySegmentJudge(JudgeConfig(backend="structural"), context=FramePackCompressor(device="cpu"))
        store = LocalRunStore(tmp_path_factory.mktemp("review") / "store")
        result = RenderPipeline(store, InlineSegmentRunner(), judge=judge).render(spec)
    finally:
        registry._FACTORIES.clear()
        registry._FACTORIES.update(saved)
    run = store.open(result.run_id)
    manifest = read_manifest(run)
    plan = RunPlan.model_validate_json(run.read_bytes(PLAN))
    names = write_review(run, manifest, plan)
    return run, manifest, plan, names, target.index


def _mean(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 3).astype(float).mean(axis=0)


# -- the contact sheet ----------------------------------------------------------------------


def test_write_review_writes_both_files_into_the_run_folder(rendered):
    run, _, _, names, _ = rendered
    assert names == [CONTACT_SHEET, REPORT_HTML]
    assert all(run.exists(name) for name in names)
    with Image.open(io.BytesIO(run.read_bytes(CONTACT_SHEET))) as sheet:
        assert sheet.format == "PNG"


def test_sheet_has_one_row_per_segment_and_thumbnails_from_each_segments_own_file(rendered):
    run, manifest, plan, _, _ = rendered
    width, height = manifest.spec.frame_size
    layout = SheetLayout.for_frames(len(manifest.segments), width, height)
    sheet = np.asarray(Image.open(io.BytesIO(run.read_bytes(CONTACT_SHEET))).convert("RGB"))
    assert (sheet.shape[1], sheet.shape[0]) == layout.size
    assert len(manifest.segments) == len(plan.segments) >= 4
    assert (layout.thumb_width, layout.thumb_height) == (192, 108)
    for row, record in enumerate(manifest.segments):
        job = plan.segments[row]
        indices = keyframe_indices(job.frames, layout.thumbs_per_row)
        assert indices[0] == 0 and indices[-1] == job.frames - 1 and len(indices) == 5
        frames = decode_frames(run.local_path(record.clip.path), indices)
        for slot, index in enumerate(indices):
            left, top, right, bottom = layout.thumb_box(row, slot)
            thumb = sheet[top:bottom, left:right]
            # The thumbnail is that frame scaled down: same mean colour within rounding.
            assert np.abs(_mean(thumb) - _mean(frames[index])).max() < 2.5, (row, slot)


def test_regenerated_segment_shows_the_kept_attempt_and_is_marked(rendered):
    run, manifest, plan, _, regenerated = rendered
    record = manifest.segments[regenerated]
    assert record.regenerations == 1 and [s.passed for s in record.scores] == [False, True]
    width, height = manifest.spec.frame_size
    layout = SheetLayout.for_frames(len(manifest.segments), width, height)
    sheet = np.asarray(Image.open(io.BytesIO(run.read_bytes(CONTACT_SHEET))).convert("RGB"))
    # Its thumbnails are the accepted file's frames, not the rejected (red) attempt's. (Both
    # start from the previous segment's seam frame, so look at the last keyframe.)
    last = keyframe_indices(plan.segments[regenerated].frames, layout.thumbs_per_row)[-1]
    rejected = decode_frames(run.local_path(record.scores[0].file), [last])[last]
    kept = decode_frames(run.local_path(record.clip.path), [last])[last]
    left, top, right, bottom = layout.thumb_box(regenerated, layout.thumbs_per_row - 1)
    thumb = _mean(sheet[top:bottom, left:right])
    assert np.abs(thumb - _mean(kept)).max() < 2.5
    assert np.abs(thumb - _mean(rejected)).max() > 20
    # The state bar on the left edge: amber for the regenerated row, green for the others.
    for row in range(len(manifest.segments)):
        top = layout.row_box(row)[1]
        colour = tuple(int(c) for c in sheet[top + layout.row_height // 2, 2])
        assert colour == (REGENERATED if row == regenerated else PASS), row
    # ... and the badge sits in its text panel's top right corner.
    _, text_top, text_right, _ = layout.text_box(regenerated)
    assert tuple(int(c) for c in sheet[text_top + 9, text_right - 3]) == REGENERATED


def test_summary_lists_the_failed_attempt_with_the_judges_reason(rendered):
    _, manifest, plan, _, regenerated = rendered
    summary = summarise(manifest, plan)
    segment = summary.segments[regenerated]
    assert segment.regenerated and summary.regenerated_segments == 1
    (failed,) = segment.failed_attempts
    assert failed.number == 1 and failed.seed == manifest.segments[regenerated].scores[0].seed
    assert failed.failures and "anchor" in failed.describe() and failed.describe().startswith("attempt 1 failed")
    assert segment.judged[1].describe().startswith("attempt 2 passed")
    assert segment.scene_text == plan.segments[regenerated].scene.description


def test_a_segment_without_a_video_gets_placeholders_not_an_error(rendered):
    run, manifest, plan, _, _ = rendered
    pending = reset(manifest, 0, "test: file lost")
    image, layout = draw_contact_sheet(run, summarise(pending, plan))
    pixels = np.asarray(image)
    left, top, right, bottom = layout.thumb_box(0, 2)
    assert (pixels[top:bottom, left:right].reshape(-1, 3) == PLACEHOLDER).all()
    left, top, right, bottom = layout.thumb_box(1, 2)
    assert not (pixels[top:bottom, left:right].reshape(-1, 3) == PLACEHOLDER).all()


def test_failed_segment_row_is_red(rendered):
    run, manifest, plan, _, _ = rendered
    failed = transition(reset(manifest, 1, "test"), 1, SegmentState.FAILED, error="provider said SAFETY")
    image, layout = draw_contact_sheet(run, summarise(failed, plan))
    top = layout.row_box(1)[1]
    assert image.getpixel((2, top + layout.row_height // 2)) == FAIL


# -- pure parts -------------------------------------------------------------------------------


def test_keyframe_indices_are_spread_over_the_contributed_frames():
    assert keyframe_indices(72, 5) == [0, 18, 36, 53, 71]
    assert keyframe_indices(3, 5) == [0, 1, 2]  # fewer frames than slots
    assert keyframe_indices(0, 5) == []


def test_layout_fits_every_aspect_and_nothing_overlaps():
    assert thumbnail_size(1280, 720) == (192, 108)
    assert thumbnail_size(720, 1280) == (108, 192)
    assert thumbnail_size(720, 720) == (192, 192)
    for frame in ((640, 360), (360, 640), (480, 480)):
        layout = SheetLayout.for_frames(3, *frame)
        width, height = layout.size
        for row in range(3):
            _, row_top, _, row_bottom = layout.row_box(row)
            boxes = [layout.thumb_box(row, slot) for slot in range(layout.thumbs_per_row)]
            for (_, _, right, _), (left, _, _, _) in pairwise(boxes):
                assert right < left  # a gap between thumbnails
            text = layout.text_box(row)
            assert boxes[-1][2] < text[0] and text[2] <= width
            for box in [*boxes, text]:
                assert row_top <= box[1] and box[3] <= row_bottom
            assert layout.caption_origin(row, 0)[1] + 14 <= row_bottom
        assert layout.row_box(2)[3] <= height


def test_fit_lines_wraps_within_the_width_and_marks_a_cut():
    font = load_font(14)
    text = "a lighthouse on a cliff at night while a storm rolls in from the sea and ships pass by"
    lines = fit_lines(text, font, 200, 2)
    assert len(lines) == 2 and lines[-1].endswith("…")
    assert all(font.getlength(line) <= 200 for line in lines)
    assert fit_lines("short", font, 200, 2) == ["short"]
    unspaced = fit_lines("一只红色的狐狸在雪林中探索" * 4, font, 120, 3)  # no spaces to break at
    assert len(unspaced) == 3 and all(font.getlength(line) <= 120 for line in unspaced)


def test_thumbnails_are_decoded_small(rendered):
    run, manifest, _, _, _ = rendered
    thumbs = decode_frames(run.local_path(manifest.segments[0].clip.path), [0, 5, 10_000], size=(96, 54))
    assert sorted(thumbs) == [0, 5]  # past the end: absent
    assert all(t.shape == (54, 96, 3) and t.dtype == np.uint8 for t in thumbs.values())


# -- the HTML report -------------------------------------------------------------------------


class _Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(text: str) -> _Elements:
    parser = _Elements()
    parser.feed(text)
    return parser


def test_report_escapes_user_text_and_embeds_sheet_and_video(rendered):
    run, manifest, _, _, regenerated = rendered
    text = run.read_bytes(REPORT_HTML).decode()
    page = _parse(text)
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed")]
    assert "<script>alert" not in text and "&lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;" in text
    assert HOSTILE_PROMPT in "".join(page.text)  # shown to the reader as the text it was
    videos = [a for t, a in page.tags if t == "video"]
    assert videos == [{"controls": None, "preload": "metadata", "src": "final.mp4", "aria-label": "The rendered video"}]
    (sheet,) = [a for t, a in page.tags if t == "img"]
    assert sheet["src"].startswith("data:image/png;base64,")
    assert base64.b64decode(sheet["src"].split(",", 1)[1]) == run.read_bytes(CONTACT_SHEET)
    body = "".join(page.text)
    for record in manifest.segments:  # every segment's attempts, with their scores
        for entry in record.scores:
            assert f"seed {entry.seed}" in body
    assert f"regenerated ×{manifest.segments[regenerated].regenerations}" in body
    assert "Judge time" in body and "Merge" in body


def test_served_report_points_the_video_at_the_given_url(rendered):
    run, manifest, plan, _, _ = rendered
    link = "/v1/renders/abc/video?exp=1700000000&sig=0f0f"
    page = _parse(report_html(run, manifest, plan, video_src=link))
    assert [a["src"] for t, a in page.tags if t == "video"] == [link]


def test_report_of_an_unfinished_run_says_so_instead_of_a_broken_video(rendered, tmp_path):
    _, manifest, plan, _, _ = rendered
    half = LocalRunStore(tmp_path).create("half")  # no final.mp4, no segments
    pending = manifest.model_copy(update={"status": RunStatus.RENDERING, "segments": [reset(manifest, i, "t").segments[i] for i in range(len(manifest.segments))]})
    names = write_review(half, pending, plan)
    page = _parse(half.read_bytes(names[1]).decode())
    assert not [t for t, _ in page.tags if t == "video"]
    assert "not there yet (status: rendering)" in "".join(page.text)
