"""Consistency: judging generated segments and keeping the context bounded.

- JudgeConfig / Thresholds: settings (backend, weights, device, batch size, thresholds).
- load_clip: CLIP weights from a local file or cache, never the network unless allowed;
  WeightsUnavailable says where it looked and how to provide them.
- ClipScorer / StructuralScorer / make_scorer: frames -> unit embeddings, one similarity.
- sample_keyframes / head_frames / tail_frames: frames to judge, decoded with PyAV.
- ConsistencyJudge / SegmentScores: anchor, seam, prompt and character checks.
- JudgeActor / create_judge_actor / judge_actor_options: the judge on Ray.
- FramePackCompressor / create_compressor_actor: a context that never exceeds 2x a frame.
- CharacterMemory: per-character embeddings, saved atomically as .npz.
- ConsistencySegmentJudge: the judge behind RenderPipeline's SegmentJudge protocol.

Importing this package loads neither torch, open_clip, av nor ray; they load on use.
"""

from .clip_model import TINY_CLIP_NAME, WeightsUnavailable, load_clip, tiny_clip_config, write_tiny_clip_checkpoint
from .config import CLIP_THRESHOLDS, STRUCTURAL_THRESHOLDS, JudgeConfig, Thresholds
from .framepack import FramePackCompressor, compressor_actor_options, create_compressor_actor, pack_sizes
from .judge import ConsistencyJudge, JudgeActor, SegmentScores, create_judge_actor, judge_actor_options
from .keyframes import count_frames, decode_frames, head_frames, keyframe_indices, sample_keyframes, tail_frames
from .memory import CharacterMemory
from .pipeline_judge import ConsistencySegmentJudge
from .scorers import ClipScorer, Scorer, StructuralScorer, best_match_similarity, make_scorer

__all__ = [
    "CLIP_THRESHOLDS",
    "STRUCTURAL_THRESHOLDS",
    "TINY_CLIP_NAME",
    "CharacterMemory",
    "ClipScorer",
    "ConsistencyJudge",
    "ConsistencySegmentJudge",
    "FramePackCompressor",
    "JudgeActor",
    "JudgeConfig",
    "Scorer",
    "SegmentScores",
    "StructuralScorer",
    "Thresholds",
    "WeightsUnavailable",
    "best_match_similarity",
    "compressor_actor_options",
    "create_compressor_actor",
    "count_frames",
    "create_judge_actor",
    "decode_frames",
    "head_frames",
    "judge_actor_options",
    "keyframe_indices",
    "load_clip",
    "make_scorer",
    "pack_sizes",
    "sample_keyframes",
    "tail_frames",
    "tiny_clip_config",
    "write_tiny_clip_checkpoint",
]
