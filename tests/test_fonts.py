"""The font lookup behind the contact sheet and burned-in subtitles: it draws CJK text
(distinct glyphs, not the .notdef box) and says plainly when it cannot."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw

from longvid.media import fonts
from longvid.review.contact_sheet import load_font


def _bitmap(text: str, font) -> np.ndarray:
    image = Image.new("L", (40, 40), 0)
    ImageDraw.Draw(image).text((4, 4), text, font=font, fill=255)
    return np.asarray(image)


@pytest.mark.skipif(fonts.find_font() is None or not fonts.find_font()[2], reason="no CJK font on this machine (fonts-noto-cjk)")
def test_contact_sheet_font_draws_distinct_cjk_glyphs_not_boxes():
    font = load_font(24)
    fox, raccoon, unassigned = _bitmap("狐", font), _bitmap("狸", font), _bitmap("\U0010fffd", font)
    assert fox.any() and raccoon.any()
    assert not np.array_equal(fox, raccoon)  # two boxes would be the same picture
    assert not np.array_equal(fox, unassigned)  # and not the box the font draws for what it lacks
    assert load_font(14, bold=True).getname()[0].startswith("Noto Sans CJK")


def test_without_a_cjk_font_a_latin_one_is_used_with_a_warning(tmp_path, caplog):
    latin = fonts._locate("DejaVuSans.ttf", fonts.FONT_DIRS)
    if latin is None:
        pytest.skip("DejaVuSans not installed")
    (tmp_path / "DejaVuSans.ttf").symlink_to(latin)
    with caplog.at_level(logging.WARNING, logger="longvid.media.fonts"):
        assert fonts.find_font(False, (tmp_path,)) == (tmp_path / "DejaVuSans.ttf", 0, False)
    assert "install fonts-noto-cjk" in caplog.text


def test_without_any_font_the_lookup_says_so(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="longvid.media.fonts"):
        assert fonts.find_font(True, (tmp_path,)) is None
    assert "no TrueType font found" in caplog.text
