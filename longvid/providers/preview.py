"""The offline preview renderer: a procedural stand-in for a video model.

Each scene is a small world (sky, sun or moon, two parallax hill layers, drifting
particles, one moving subject per character) built from the scene's palette and lighting
and seeded by the scene seed, so every segment of a scene shows the same place. A segment
renders its slice of the scene's timeline (`scene_offset_s` on), so segments of one scene
join without a jump; scenes differ in palette, camera move and lighting, so changes show.
Given a conditioning frame it starts on exactly that frame and eases into its own render
(the difference fades out over half a second), the way an image-to-video model continues
from its prompt image.

Everything is vectorised numpy on (H, W) grids; no per-pixel Python.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import numpy as np

from ..media.encoding import encode_mp4
from ..planning.segmentation import DurationRule
from ..spec import CameraMove, Lighting, Scene, SegmentJob
from .base import ProviderCapabilities, TaskState, TaskStatus

PREVIEW_CAPABILITIES = ProviderCapabilities(
    name="preview",
    model="procedural-v1",
    durations=DurationRule(min_s=1.0, max_s=20.0),
    image_conditioning=True,
    runs_remotely=False,
    uses_gpu=False,
    price_per_second_usd=0.0,
    idempotent_submit=True,
    notes=("offline procedural renderer; embedded default and test double",),
)

CONDITIONING_RAMP_FRAMES = 12


@dataclass(frozen=True)
class _Light:
    brightness: float
    tint: tuple[float, float, float]  # added after scaling, 0..1
    sun_colour: tuple[float, float, float]
    sun_height: float  # 0 = horizon, 1 = top of frame
    stars: bool
    saturation: float = 1.0


_LIGHTS: dict[Lighting, _Light] = {
    Lighting.DAWN: _Light(0.92, (0.08, 0.02, 0.03), (1.0, 0.75, 0.6), 0.25, False),
    Lighting.DAY: _Light(1.0, (0.0, 0.0, 0.0), (1.0, 0.97, 0.85), 0.8, False),
    Lighting.GOLDEN_HOUR: _Light(0.95, (0.10, 0.05, -0.03), (1.0, 0.8, 0.4), 0.35, False),
    Lighting.DUSK: _Light(0.72, (0.05, -0.01, 0.06), (1.0, 0.5, 0.4), 0.12, False),
    Lighting.NIGHT: _Light(0.42, (-0.02, 0.0, 0.08), (0.9, 0.92, 1.0), 0.7, True),
    Lighting.NEON: _Light(0.6, (0.10, -0.02, 0.12), (1.0, 0.3, 0.9), 0.5, True),
    Lighting.OVERCAST: _Light(0.8, (0.0, 0.0, 0.02), (0.9, 0.9, 0.9), 0.6, False, saturation=0.55),
}

_COLOUR_HUES = {"red": 0.0, "orange": 0.07, "yellow": 0.15, "gold": 0.12, "green": 0.33, "blue": 0.6,
                "purple": 0.75, "pink": 0.9, "white": -1.0, "black": -2.0, "红": 0.0, "蓝": 0.6, "绿": 0.33,
                "黄": 0.15, "白": -1.0, "黑": -2.0, "紫": 0.75}


def _hex(colour: str) -> np.ndarray:
    return np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0


def _seeded(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256("\x00".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _subject_colour(name: str) -> np.ndarray:
    import colorsys

    low = name.lower()
    hue = next((h for word, h in _COLOUR_HUES.items() if word in low), None)
    if hue is None:
        hue = int(hashlib.sha256(name.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    if hue == -1.0:
        return np.array([0.95, 0.95, 0.97], np.float32)
    if hue == -2.0:
        return np.array([0.08, 0.08, 0.1], np.float32)
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.9), np.float32)


class SceneWorld:
    """The procedural world of one scene: everything that does not change with time."""

    def __init__(self, scene: Scene, seed: int, width: int, height: int):
        self.scene, self.width, self.height = scene, width, height
        rng = _seeded("world", seed, scene.description, tuple(scene.color_palette))
        palette = [_hex(c) for c in scene.color_palette]
        while len(palette) < 4:
            palette.append(palette[-1] * 0.7)
        self.sky_top, self.sky_horizon, self.far_colour, self.near_colour = palette[:4]
        self.light = _LIGHTS[scene.lighting]
        # Hills: sums of sines in world units (1 unit = frame height).
        self.hills = []
        for base, amplitude in ((0.55, 0.08), (0.72, 0.06)):
            freqs = rng.uniform(0.8, 4.0, 4).astype(np.float32)
            phases = rng.uniform(0, 2 * np.pi, 4).astype(np.float32)
            amps = (amplitude * rng.uniform(0.3, 1.0, 4) / np.arange(1, 5)).astype(np.float32)
            self.hills.append((base, freqs, phases, amps))
        self.sun_x = float(rng.uniform(-0.6, 0.6))
        count = 160 if self.light.stars else 90
        self.particles = rng.uniform(0, 1, (count, 2)).astype(np.float32)
        text = scene.description.lower()
        self.falling = any(w in text for w in ("snow", "rain", "雪", "雨"))
        self.subjects = [
            (_subject_colour(c.name + " " + c.description), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.8, 1.2)))
            for c in scene.characters
        ]
        self.rows = (np.arange(height, dtype=np.float32) / height)[:, None]  # (H, 1), 0 top .. 1 bottom
        self.cols = ((np.arange(width, dtype=np.float32) - width / 2) / height)[None, :]  # world units
        self.lut = self._colour_table()

    # Frames are drawn as a map of colour codes (layer x shade) and looked up in one graded
    # table: a few (H, W) integer passes instead of many float RGB ones.
    SHADES = 128
    SKY, FAR, NEAR = 0, 1, 2

    def _colour_table(self) -> np.ndarray:
        ramp = np.linspace(0, 1, self.SHADES, dtype=np.float32)[:, None]
        sky = self.sky_top * (1 - ramp) + self.sky_horizon * ramp
        far = self.far_colour * (1 - 0.35 * ramp)
        near = self.near_colour * (1 - 0.35 * ramp)
        subjects = [colour * (0.8 + 0.2 * (1 - 2 * ramp)) for colour, _, _ in self.subjects]
        eye = np.full((1, 3), 0.05, np.float32)
        return self._grade(np.concatenate([sky, far, near, *subjects, eye]))

    def _code(self, layer: int, shade: np.ndarray) -> np.ndarray:
        return (layer * self.SHADES + np.clip(shade * (self.SHADES - 1), 0, self.SHADES - 1)).astype(np.int16)

    def camera(self, t: float) -> tuple[float, float, float]:
        """(x offset, y offset, zoom) at scene time t."""
        move = self.scene.camera_movement
        x = y = 0.0
        zoom = 1.0
        if move is CameraMove.PAN_LEFT:
            x = -0.08 * t
        elif move is CameraMove.PAN_RIGHT:
            x = 0.08 * t
        elif move is CameraMove.TILT_UP:
            y = -0.06 * math.tanh(t / 10)
        elif move is CameraMove.TILT_DOWN:
            y = 0.06 * math.tanh(t / 10)
        elif move is CameraMove.ZOOM_IN:
            zoom = min(2.0, math.exp(0.015 * t))
        elif move is CameraMove.ZOOM_OUT:
            zoom = max(1.0, 1.5 * math.exp(-0.015 * t))
        elif move is CameraMove.DOLLY:
            x = 0.05 * t
            zoom = min(1.6, math.exp(0.008 * t))
        else:  # static: a slight handheld drift keeps it alive
            x = 0.01 * math.sin(0.7 * t)
            y = 0.004 * math.sin(1.1 * t)
        return x, y, zoom

    def render(self, t: float) -> np.ndarray:
        """One RGB uint8 frame at scene time t."""
        h, w = self.height, self.width
        cam_x, cam_y, zoom = self.camera(t)
        rows = self.rows + cam_y
        codes = np.broadcast_to(self._code(self.SKY, rows / 0.6), (h, w))
        for layer, (base, freqs, phases, amps) in enumerate(self.hills):
            parallax = 0.35 if layer == 0 else 1.0
            layer_zoom = 1 + (zoom - 1) * parallax
            world_x = self.cols / layer_zoom + cam_x * parallax
            ridge = base - (amps[:, None] * np.sin(freqs[:, None] * world_x + phases[:, None])).sum(0, keepdims=True)
            ridge = 0.5 + (ridge - 0.5) * layer_zoom  # zoom about the frame centre
            depth = rows - ridge  # (H, W); positive below the ridge line
            codes = np.where(depth > 0, self._code(self.FAR if layer == 0 else self.NEAR, depth * 1.5), codes)
            if layer == 0:
                codes = codes.copy()
                self._draw_subjects(codes, t, zoom)
        image = self.lut[codes]
        self._draw_sun(image, codes, cam_x, rows)
        self._draw_particles(image, t, cam_x)
        return image

    def _draw_sun(self, image: np.ndarray, codes: np.ndarray, cam_x: float, rows: np.ndarray) -> None:
        h, w = self.height, self.width
        cx = w / 2 + (self.sun_x - cam_x * 0.1) * h
        cy = (0.55 - 0.45 * self.light.sun_height) * h - rows[0, 0] * h
        radius = 0.07 * h
        y0, y1 = int(max(0, cy - 3 * radius)), int(min(h, cy + 3 * radius))
        x0, x1 = int(max(0, cx - 3 * radius)), int(min(w, cx + 3 * radius))
        if y0 >= y1 or x0 >= x1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / radius
        glow = np.clip(np.clip(1.2 - dist / 2.5, 0, 1) ** 2 * 0.5 + (dist < 1), 0, 1)
        glow *= codes[y0:y1, x0:x1] < self.SHADES  # behind the hills
        sun = self._grade(np.asarray(self.light.sun_colour, np.float32)[None, :]).astype(np.float32)
        patch = image[y0:y1, x0:x1].astype(np.float32)
        image[y0:y1, x0:x1] = (patch + (sun - patch) * glow[..., None] + 0.5).astype(np.uint8)

    def _draw_particles(self, image: np.ndarray, t: float, cam_x: float) -> None:
        h, w = self.height, self.width
        px = (self.particles[:, 0] - cam_x * 0.2 / max(w / h, 1)) % 1.0
        py = self.particles[:, 1]
        if self.falling:
            py = (py + t * 0.06 * (0.5 + self.particles[:, 0])) % 1.0
            px = (px + 0.01 * np.sin(t + self.particles[:, 1] * 9)) % 1.0
        xs = np.clip((px * w).astype(np.int32), 0, w - 2)
        ys = np.clip((py * h).astype(np.int32), 0, h - 2)
        value = 0.95 if self.falling or self.light.stars else 0.85
        for dy in (0, 1):
            for dx in (0, 1):
                spot = image[ys + dy, xs + dx].astype(np.float32)
                image[ys + dy, xs + dx] = (spot * 0.3 + value * 255 * 0.7).astype(np.uint8)

    def _draw_subjects(self, codes: np.ndarray, t: float, zoom: float) -> None:
        h, w = self.height, self.width
        eye_code = (3 + len(self.subjects)) * self.SHADES
        for k, (_, phase, speed) in enumerate(self.subjects):
            # The subject wanders around the frame centre while the camera follows it.
            sx = w / 2 + (0.28 * math.sin(0.22 * speed * t + phase) + 0.18 * (k - (len(self.subjects) - 1) / 2)) * h
            sy = (0.62 + 0.02 * k) * h + 0.01 * h * math.sin(5.0 * speed * t)  # a walking bob
            size = 0.075 * h * zoom
            y0, y1 = int(max(0, sy - 2.2 * size)), int(min(h, sy + 1.3 * size))
            x0, x1 = int(max(0, sx - 2.2 * size)), int(min(w, sx + 2.2 * size))
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            facing = 1.0 if math.cos(0.22 * speed * t + phase) >= 0 else -1.0
            body = ((xx - sx) / (1.3 * size)) ** 2 + ((yy - sy) / (0.6 * size)) ** 2 <= 1
            hx, hy = sx + facing * 1.15 * size, sy - 0.55 * size
            head = ((xx - hx) / (0.5 * size)) ** 2 + ((yy - hy) / (0.45 * size)) ** 2 <= 1
            tail = ((xx - (sx - facing * 1.5 * size)) / (0.6 * size)) ** 2 + ((yy - (sy - 0.2 * size)) / (0.22 * size)) ** 2 <= 1
            swing = 0.25 * size * math.sin(6.0 * speed * t)
            legs = (np.abs(yy - (sy + 0.85 * size)) < 0.4 * size) & (
                (np.abs(xx - (sx - 0.6 * size + swing)) < 0.12 * size) | (np.abs(xx - (sx + 0.6 * size - swing)) < 0.12 * size)
            )
            shade = np.clip((yy - sy) / size, -1, 1) * 0.5 + 0.5  # lit from above
            patch = codes[y0:y1, x0:x1]
            patch[:] = np.where(body | head | tail | legs, self._code(3 + k, shade), patch)
            eye = ((xx - (hx + facing * 0.2 * size)) ** 2 + (yy - (hy - 0.08 * size)) ** 2) <= (0.08 * size) ** 2
            patch[eye] = eye_code

    def _grade(self, colours: np.ndarray) -> np.ndarray:
        """Lighting applied to RGB colours in 0..1 -> uint8."""
        light = self.light
        if light.saturation != 1.0:
            grey = colours.mean(axis=-1, keepdims=True)
            colours = grey + (colours - grey) * light.saturation
        colours = colours * light.brightness + np.asarray(light.tint, np.float32)
        return (np.clip(colours, 0, 1) * 255 + 0.5).astype(np.uint8)


def _conditioning_image(png: bytes, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(png)) as image:
        fitted = ImageOps.fit(image.convert("RGB"), (width, height))
    return np.asarray(fitted, np.float32)


def render_frames(job: SegmentJob, conditioning_png: bytes | None = None, frame_count: int | None = None):
    """Yield the segment's RGB frames: its slice of the scene's timeline."""
    world = SceneWorld(job.scene, job.seed, job.width, job.height)
    count = frame_count if frame_count is not None else int(round(job.generate_duration_s * job.fps))
    residual = None
    for k in range(count):
        frame = world.render(job.scene_offset_s + k / job.fps)
        if k == 0 and conditioning_png is not None:
            # Start exactly on the conditioning frame and let the difference fade out, so
            # motion carries on instead of ghosting over a frozen image.
            residual = _conditioning_image(conditioning_png, job.width, job.height) - frame.astype(np.float32)
        if residual is not None and k < CONDITIONING_RAMP_FRAMES:
            weight = 1 - k / CONDITIONING_RAMP_FRAMES
            frame = np.clip(frame + residual * weight + 0.5, 0, 255).astype(np.uint8)
        yield frame


class PreviewProvider:
    """Renders locally and synchronously; the protocol's task id is a content hash, so the
    same job is the same task."""

    capabilities = PREVIEW_CAPABILITIES

    def __init__(self) -> None:
        self._jobs: dict[str, tuple[SegmentJob, bytes | None]] = {}

    def submit(self, job: SegmentJob, conditioning_png: bytes | None = None) -> str:
        digest = hashlib.sha256(job.model_dump_json().encode() + (conditioning_png or b"")).hexdigest()[:24]
        task_id = f"preview-{digest}"
        self._jobs[task_id] = (job, conditioning_png)
        return task_id

    def poll(self, task_id: str) -> TaskStatus:
        if task_id not in self._jobs:
            return TaskStatus(TaskState.FAILED, error=f"unknown task {task_id}", failure_code="ASSET.INVALID")
        return TaskStatus(TaskState.SUCCEEDED, progress=1.0)

    def fetch(self, task_id: str) -> bytes:
        job, conditioning = self._jobs.pop(task_id)
        frames = render_frames(job, conditioning)
        # IDR frames where the merge's copy ranges start and end, so it re-encodes only seams.
        keyframes = {job.head_frames, job.frames}
        return encode_mp4(frames, job.fps, job.width, job.height, keyframes=keyframes)

    def price(self, duration_s: float) -> float:
        return 0.0
