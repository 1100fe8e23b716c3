"""The engine: a loaded model + tokenizer behind the stable Python API and the server's queue.

`generate()` streams one request; `submit()` queues a request from any thread and returns its
`Sequence` (the server's path). When `start()` has launched the background scheduler loop, all
requests share its decode steps; otherwise `generate()` drives the scheduler itself.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Sequence as Seq

import torch

from model.engine.detokenize import IncrementalDetokenizer
from model.engine.reasoning import ReasoningSplitter, prompt_opens_reasoning
from model.engine.sampler import SamplingParams, make_generator
from model.engine.scheduler import Scheduler, SchedulerStats
from model.engine.sequence import FinishReason, Sequence, TextDelta

log = logging.getLogger(__name__)

# End-of-turn tokens of the chat formats we serve; a tokenizer's `eos_token` is not always the one
# its chat template closes a turn with (Qwen2.5: eos `<|endoftext|>`, turn end `<|im_end|>`).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<｜end▁of▁sentence｜>", "<|eot_id|>", "<|end_of_text|>")


class RequestTooLongError(ValueError):
    """The prompt plus the requested completion does not fit in the context window."""


def end_of_turn_ids(tokenizer) -> frozenset[int]:
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


class Engine:
    def __init__(self, model: torch.nn.Module, tokenizer, runtime) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.runtime = runtime
        self.scheduler = Scheduler(
            model,
            max_batch_size=runtime.max_batch_size,
            end_of_turn_ids=end_of_turn_ids(tokenizer),
            device=runtime.device,
        )
        self._step_lock = threading.Lock()
        self._work_ready = threading.Condition()
        self._loop_thread: threading.Thread | None = None
        self._is_stopping = False

    @property
    def max_seq_len(self) -> int:
        return self.runtime.max_seq_len

    @property
    def stats(self) -> SchedulerStats:
        return self.scheduler.stats

    @torch.inference_mode()
    def logits(self, tokens: torch.Tensor, start_pos: int = 0) -> torch.Tensor:
        """Runs tokens [B, T] at positions start_pos.. through cache slots 0..B-1."""
        batch_size, num_tokens = tokens.shape
        positions = torch.arange(start_pos, start_pos + num_tokens, device=tokens.device)
        slots = torch.arange(batch_size, device=tokens.device)
        with self._step_lock:
            return self.model(tokens, positions.expand(batch_size, -1), slots)

    def reset(self) -> None:
        reset_cache = getattr(self.model, "reset_cache", None)
        if reset_cache is not None:
            with self._step_lock:
                reset_cache()

    def encode_prompt(self, prompt: Seq[int] | Seq[Mapping[str, str]] | str) -> list[int]:
        """Token ids for raw ids, a raw string, or chat messages (rendered with the chat template)."""
        if isinstance(prompt, str):
            return self.tokenizer.encode(prompt, add_special_tokens=False)
        if prompt and isinstance(prompt[0], Mapping):
            text = self.tokenizer.apply_chat_template(
                list(prompt), add_generation_prompt=True, tokenize=False
            )
            # The template already holds BOS where the model wants one.
            return self.tokenizer.encode(text, add_special_tokens=False)
        return [int(t) for t in prompt]

    def submit(
        self,
        prompt_ids: Seq[int],
        params: SamplingParams,
        emit: Callable[[TextDelta], None],
    ) -> Sequence:
        """Queues a request (thread-safe); `emit` receives its deltas on the scheduler thread."""
        num_prompt_tokens = len(prompt_ids)
        room = self.max_seq_len - num_prompt_tokens
        if num_prompt_tokens == 0:
            raise ValueError("the prompt is empty")
        if room < 1 or (params.max_tokens is not None and params.max_tokens > room):
            raise RequestTooLongError(
                f"the prompt has {num_prompt_tokens} tokens and max_tokens is {params.max_tokens}; "
                f"together they must fit in the context window of {self.max_seq_len} tokens"
            )
        seq = Sequence(
            prompt_ids=list(prompt_ids),
            params=params,
            max_new_tokens=params.max_tokens or room,
            detokenizer=IncrementalDetokenizer(self.tokenizer, prompt_ids, params.stop),
            splitter=ReasoningSplitter(is_reasoning=prompt_opens_reasoning(self.tokenizer, prompt_ids)),
            generator=make_generator(params.seed, self.runtime.device),
            emit=emit,
        )
        self.scheduler.add(seq)
        with self._work_ready:
            self._work_ready.notify()
        return seq

    def generate(
        self, prompt: Seq[int] | Seq[Mapping[str, str]] | str, params: SamplingParams | None = None
    ) -> Iterator[TextDelta]:
        """Streams the deltas of one request until it finishes (closing the iterator cancels it)."""
        deltas: queue.SimpleQueue[TextDelta] = queue.SimpleQueue()
        seq = self.submit(self.encode_prompt(prompt), params or SamplingParams(), deltas.put)
        try:
            while True:
                if self._loop_thread is None:
                    while deltas.empty():
                        self.step()
                delta = deltas.get()
                yield delta
                if delta.finish_reason is not None:
                    return
        finally:
            seq.cancel()

    def start(self) -> None:
        """Launches the background scheduler loop (the server's mode)."""
        assert self._loop_thread is None, "the scheduler loop is already running"
        self._is_stopping = False
        self._loop_thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._loop_thread.start()

    def stop(self) -> None:
        if self._loop_thread is None:
            return
        with self._work_ready:
            self._is_stopping = True
            self._work_ready.notify()
        self._loop_thread.join()
        self._loop_thread = None
        self.scheduler.abort_all(FinishReason.CANCELLED)

    def _loop(self) -> None:
        while True:
            with self._work_ready:
                self._work_ready.wait_for(lambda: self._is_stopping or self.scheduler.has_work)
                if self._is_stopping:
                    return
            self.step()

    @torch.inference_mode()
    def step(self) -> None:
        """One scheduler step in the caller's thread (what the background loop repeats)."""
        with self._step_lock:
            try:
                self.scheduler.step()
            except Exception:
                # Requests in flight cannot continue after a failed forward; fail them, keep serving.
                log.exception("scheduler step failed")
                self.scheduler.abort_all(FinishReason.ERROR)
