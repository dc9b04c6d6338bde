"""Long-range drift: what the video looked like several segments ago, kept for the whole render.

The anchor check compares a segment with its scene's first accepted frame and the seam
check with its predecessor; character memory keeps only the newest appearances (a FIFO of
16 embeddings, ~4 segments of keyframes), so a look that changes a little per segment
walks away unseen. In the spirit of VBench-Long's slow-fast evaluation this memory keeps the
slow side:

- per scene, the first frame of every accepted segment (bounded: the first `keep` ones and
  the newest `keep`), so a segment is compared with the anchors `lookback` or more segments
  back, each of them, not just the closest;
- per character, the video's first accepted appearance (the keyframes of the first accepted
  segment it is in), never evicted. Whole-frame embeddings of another scene differ by
  design, so these count only inside the same scene for the weight-free scorer; with CLIP
  they count everywhere.

`drift` (judge.py) is the lowest, over those anchors, of the keyframes' mean similarity to
the anchor. Saved in the run folder (longrange.npz) and rebuilt on resume from the accepted
segments (acceptance.remember), so a resumed render keeps its slow side.
"""

from __future__ import annotations

import io
import json

import numpy as np

_FORMAT = 1


class LongRangeMemory:
    def __init__(self, lookback: int = 2, keep: int = 8, cross_scene_characters: bool = False) -> None:
        self.lookback = lookback
        self.keep = keep
        self.cross_scene_characters = cross_scene_characters
        self.scenes: dict[int, list[tuple[int, np.ndarray]]] = {}  # scene -> [(segment index, (1, D))]
        self.characters: dict[str, tuple[int, np.ndarray]] = {}  # casefolded name -> (scene, (K, D))

    def remember(self, scene: int, segment: int, first_frame: np.ndarray, characters: dict[str, np.ndarray] | None = None) -> None:
        """An accepted segment: its first frame's embedding, and the keyframes of characters
        seen for the first time."""
        history = self.scenes.setdefault(scene, [])
        if any(index == segment for index, _ in history):
            return  # remembered already (resume replays accepted segments)
        history.append((segment, np.atleast_2d(np.asarray(first_frame, np.float32))))
        history.sort(key=lambda item: item[0])
        if len(history) > 2 * self.keep:
            del history[self.keep : len(history) - self.keep]
        for name, emb in (characters or {}).items():
            self.characters.setdefault(name.strip().casefold(), (scene, np.atleast_2d(np.asarray(emb, np.float32))))

    def anchors_for(self, scene: int, segment: int, characters: list[str] = (), without_scene_anchor: bool = False) -> list[np.ndarray]:
        """The slow anchors of segment `segment`: its scene's accepted segments at least
        `lookback` back, and the first appearances of its characters. `without_scene_anchor`
        leaves out the scene's first accepted segment, which the anchor check already holds
        the segment against (with its own threshold, on its worst keyframe)."""
        history = self.scenes.get(scene, [])
        out = [emb for index, emb in history[1 if without_scene_anchor else 0 :] if index <= segment - self.lookback]
        for name in characters:
            found = self.characters.get(name.strip().casefold())
            if found is not None and (self.cross_scene_characters or found[0] == scene):
                out.append(found[1])
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.scenes.values()) + len(self.characters)

    def to_bytes(self) -> bytes:
        meta = {"format": _FORMAT, "scenes": {str(s): [i for i, _ in h] for s, h in self.scenes.items()},
                "characters": {n: s for n, (s, _) in self.characters.items()}}
        arrays = {"meta": np.array(json.dumps(meta))}
        for scene, history in self.scenes.items():
            for index, emb in history:
                arrays[f"scene_{scene}_{index}"] = emb
        for k, (_, emb) in enumerate(self.characters.values()):
            arrays[f"character_{k}"] = emb
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    def load_bytes(self, data: bytes) -> None:
        """Merge a saved memory into this one (what is already here wins)."""
        with np.load(io.BytesIO(data), allow_pickle=False) as saved:
            meta = json.loads(str(saved["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"unknown long-range memory format {meta.get('format')}")
            for scene, indices in meta["scenes"].items():
                for index in indices:
                    self.remember(int(scene), index, saved[f"scene_{scene}_{index}"])
            for k, (name, scene) in enumerate(meta["characters"].items()):
                self.characters.setdefault(name, (scene, saved[f"character_{k}"].astype(np.float32)))
