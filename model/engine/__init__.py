"""Generation: sampling, incremental detokenization, reasoning split, continuous batching."""

from model.engine.engine import Engine, RequestTooLongError
from model.engine.sampler import SamplingParams
from model.engine.sequence import FinishReason, TextDelta

__all__ = ["Engine", "FinishReason", "RequestTooLongError", "SamplingParams", "TextDelta"]
