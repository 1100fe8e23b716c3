"""One request's state while it waits, runs and finishes in the scheduler."""

from __future__ import annotations

import enum
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from model.engine.detokenize import IncrementalDetokenizer
from model.engine.reasoning import ReasoningSplitter
from model.engine.sampler import SamplingParams, TokenLogprob


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class FinishReason(str, enum.Enum):
    """Values as the OpenAI API spells `finish_reason`."""

    STOP = "stop"  # end-of-turn token or stop string
    LENGTH = "length"  # max_tokens or the context window
    CANCELLED = "cancelled"  # the client went away
    ERROR = "error"  # the model step raised; the server log has the traceback


@dataclass(frozen=True)
class TextDelta:
    """What one step added to a request's output, plus its totals so far."""

    content: str
    reasoning: str
    token_ids: tuple[int, ...]
    num_prompt_tokens: int
    num_completion_tokens: int
    finish_reason: FinishReason | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # of token_ids, when the request asked for them


_request_ids = itertools.count()


@dataclass(eq=False)
class Sequence:
    """A request: prompt, settings, generated ids and the streaming state for its text.

    `slot` is the KV-cache slot it owns while RUNNING; `emit` is called from the scheduler thread
    with each TextDelta (the caller decides how to hand it across threads).
    """

    prompt_ids: list[int]
    params: SamplingParams
    max_new_tokens: int
    detokenizer: IncrementalDetokenizer
    splitter: ReasoningSplitter
    generator: torch.Generator
    emit: Callable[[TextDelta], None]
    request_id: int = field(default_factory=lambda: next(_request_ids))
    output_ids: list[int] = field(default_factory=list)
    status: SequenceStatus = SequenceStatus.WAITING
    slot: int | None = None
    finish_reason: FinishReason | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def num_prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    @property
    def last_token_id(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def cancel(self) -> None:
        """Thread-safe: the scheduler drops the request at its next step."""
        self.cancel_event.set()

    def append(self, token_id: int, *, is_end_of_turn: bool, logprob: TokenLogprob | None = None) -> None:
        """Records one generated id, finishes the sequence if it should stop, and emits the delta."""
        self.output_ids.append(token_id)
        text = "" if is_end_of_turn else self.detokenizer.push(token_id)
        if is_end_of_turn or self.detokenizer.is_stopped:
            self.finish_reason = FinishReason.STOP
        elif len(self.output_ids) >= self.max_new_tokens:
            self.finish_reason = FinishReason.LENGTH
        if self.finish_reason is not None:
            text += self.detokenizer.flush()
        reasoning, content = self.splitter.feed(text)
        if self.finish_reason is not None:
            tail_reasoning, tail_content = self.splitter.flush()
            reasoning, content = reasoning + tail_reasoning, content + tail_content
        self.emit(
            TextDelta(
                content=content,
                reasoning=reasoning,
                token_ids=(token_id,),
                num_prompt_tokens=self.num_prompt_tokens,
                num_completion_tokens=len(self.output_ids),
                finish_reason=self.finish_reason,
                logprobs=() if logprob is None else (logprob,),
            )
        )

    def finish_early(self, reason: FinishReason) -> None:
        """Ends the request without another token (cancelled, or a failed step)."""
        self.finish_reason = reason
        self.emit(
            TextDelta(
                content="",
                reasoning="",
                token_ids=(),
                num_prompt_tokens=self.num_prompt_tokens,
                num_completion_tokens=len(self.output_ids),
                finish_reason=self.finish_reason,
            )
        )
