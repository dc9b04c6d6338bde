import pytest
from pydantic import ValidationError

from longvid.errors import describe_validation_error
from longvid.spec import AspectRatio, RenderSpec, Resolution, frame_size


@pytest.mark.parametrize(
    "aspect, resolution, size",
    [
        ("16:9", "720p", (1280, 720)),
        ("16:9", "360p", (640, 360)),
        ("16:9", "1080p", (1920, 1080)),
        ("9:16", "720p", (720, 1280)),
        ("1:1", "480p", (480, 480)),
        ("16:9", "480p", (854, 480)),
    ],
)
def test_frame_size_is_even_and_matches_aspect(aspect, resolution, size):
    width, height = frame_size(AspectRatio(aspect), Resolution(resolution))
    assert (width, height) == size
    assert width % 2 == 0 and height % 2 == 0


def test_defaults():
    spec = RenderSpec(prompt="  a fox  ")
    assert spec.prompt == "a fox"
    assert spec.duration_s == 45 and spec.fps == 24 and spec.provider == "preview"
    assert spec.total_frames == 45 * 24


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt_is_refused_with_a_hint(prompt):
    with pytest.raises(ValidationError) as info:
        RenderSpec(prompt=prompt)
    message = describe_validation_error(info.value)
    assert message.startswith("prompt: the prompt is empty")


@pytest.mark.parametrize("duration", [0, 4.9, 600.1, 10000, -5])
def test_duration_out_of_range_says_the_range(duration):
    with pytest.raises(ValidationError) as info:
        RenderSpec(prompt="fox", duration_s=duration)
    message = describe_validation_error(info.value)
    assert "between 5 and 600 seconds" in message and "--duration" in message


def test_unreadable_reference_image_is_refused(tmp_path):
    bogus = tmp_path / "not-an-image.png"
    bogus.write_bytes(b"this is text, not a PNG")
    with pytest.raises(ValidationError) as info:
        RenderSpec(prompt="fox", reference_images=[bogus])
    assert "cannot be read as an image" in describe_validation_error(info.value)


def test_missing_storyboard_file_is_refused(tmp_path):
    with pytest.raises(ValidationError) as info:
        RenderSpec(prompt="fox", storyboard_file=tmp_path / "nope.yaml")
    assert "does not exist" in describe_validation_error(info.value)
