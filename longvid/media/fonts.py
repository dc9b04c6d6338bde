"""Finding a TrueType font that can draw the text we put on pictures (contact sheet,
burned-in subtitles), Chinese, Japanese and Korean included.

Noto Sans CJK (Debian: fonts-noto-cjk) covers CJK and Latin text; without it a Latin
font is used, CJK characters come out as boxes, and a warning says how to fix that.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from PIL import ImageFont

log = logging.getLogger(__name__)

FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path("/Library/Fonts"),
    Path("/System/Library/Fonts"),
    Path("C:/Windows/Fonts"),
)
# File names tried in order: CJK-capable first (Noto Sans CJK, then others that cover Chinese).
CJK_FONTS = {
    False: ("NotoSansCJK-Regular.ttc", "NotoSansCJKsc-Regular.otf", "NotoSansSC-Regular.otf", "wqy-microhei.ttc", "wqy-zenhei.ttc", "DroidSansFallbackFull.ttf", "PingFang.ttc", "msyh.ttc"),
    True: ("NotoSansCJK-Bold.ttc", "NotoSansCJKsc-Bold.otf", "NotoSansSC-Bold.otf", "wqy-microhei.ttc", "wqy-zenhei.ttc", "DroidSansFallbackFull.ttf", "PingFang.ttc", "msyhbd.ttc"),
}
LATIN_FONTS = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "NotoSans-Regular.ttf", "Arial.ttf"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "NotoSans-Bold.ttf", "Arial Bold.ttf"),
}
_PREFERRED_FACE = "SC"  # of a CJK collection's faces (JP, KR, SC, TC, HK): simplified Chinese


@functools.lru_cache(maxsize=4)
def find_font(bold: bool = False, dirs: tuple[Path, ...] = FONT_DIRS) -> tuple[Path, int, bool] | None:
    """(file, face index in the collection, covers CJK) of the best font on this machine."""
    for names, cjk in ((CJK_FONTS[bold], True), (LATIN_FONTS[bold], False)):
        for name in names:
            path = _locate(name, dirs)
            if path is not None:
                if not cjk:
                    log.warning("no CJK font found: Chinese, Japanese and Korean text will show as boxes (install fonts-noto-cjk)")
                return path, _face_index(path), cjk
    log.warning("no TrueType font found: using Pillow's default font, which has no CJK glyphs (install fonts-noto-cjk)")
    return None


def _locate(name: str, dirs: tuple[Path, ...]) -> Path | None:
    for folder in dirs:
        if not folder.is_dir():
            continue
        direct = folder / name
        if direct.is_file():
            return direct
        for found in folder.rglob(name):
            return found
    return None


def _face_index(path: Path) -> int:
    if path.suffix.lower() != ".ttc":
        return 0
    for index in range(8):
        try:
            family, _style = ImageFont.truetype(str(path), 12, index=index).getname()
        except OSError:
            break
        if family and family.endswith(f" {_PREFERRED_FACE}"):
            return index
    return 0


@functools.lru_cache(maxsize=32)
def load_font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font of `size` pixels that draws CJK text when the machine has one."""
    found = find_font(bold)
    if found is None:
        return ImageFont.load_default(size=size)
    path, index, _cjk = found
    return ImageFont.truetype(str(path), size, index=index)
