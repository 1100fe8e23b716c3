"""Continuous batching over the model's static KV-cache slots.

Each `step()` admits waiting requests into free slots and prefills them (one request at a time, in
chunks that bound the activations of a long prompt; the LM head runs on a chunk's last position
only), then runs ONE decode forward for every other running request together, samples, and
releases the slots of finished requests. `add()` may be called from any thread; `step()` from one
thread only. The only host sync per decode step is reading the sampled ids.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import torch

from model.engine.sampler import TokenLogprob, choose_tokens, token_logprobs
from model.engine.sequence import FinishReason, Sequence, SequenceStatus

# Prompt tokens per prefill forward: bounds the activations and attention scores of a long prompt
# while keeping the GEMMs large enough to run at full speed.
DEFAULT_PREFILL_CHUNK_TOKENS = 512


@dataclass
class SchedulerStats:
    """Monotonic counters plus the current queue sizes (read by /metrics)."""

    num_requests: int = 0
    num_prompt_tokens: int = 0
    num_generated_tokens: int = 0
    num_running: int = 0
    num_waiting: int = 0


class Scheduler:
    def __init__(
        self,
        model: torch.nn.Module,
        *,
        max_batch_size: int,
        end_of_turn_ids: frozenset[int],
        device: str = "cpu",
        prefill_chunk_tokens: int = DEFAULT_PREFILL_CHUNK_TOKENS,
    ) -> None:
        self.model = model
        self.device = device
        self.end_of_turn_ids = end_of_turn_ids
        self.prefill_chunk_tokens = prefill_chunk_tokens
        self.free_slots = list(range(max_batch_size))
        self.max_batch_size = max_batch_size
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.stats = SchedulerStats()
        self._lock = threading.Lock()
        # [max_batch_size, vocab] bool per slot, allocated on the first repetition-penalty request.
        self._seen: torch.Tensor | None = None

    def add(self, seq: Sequence) -> None:
        with self._lock:
            self.waiting.append(seq)
            self.stats.num_requests += 1
            self.stats.num_waiting = len(self.waiting)

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self) -> None:
        self._drop_cancelled()
        admitted = self._admit()
        for seq in admitted:
            self._prefill(seq)
        decoding = [s for s in self.running if s not in admitted]
        if decoding:
            self._decode(decoding)
        self._release_finished()

    def abort_all(self, reason: FinishReason) -> None:
        with self._lock:
            doomed = [*self.running, *self.waiting]
            self.waiting.clear()
        for seq in doomed:
            if not seq.is_finished:
                seq.finish_early(reason)
                seq.status = SequenceStatus.FINISHED
        self._release_finished()

    def _admit(self) -> list[Sequence]:
        admitted = []
        with self._lock:
            while self.waiting and self.free_slots:
                seq = self.waiting.popleft()
                seq.slot = self.free_slots.pop(0)
                seq.status = SequenceStatus.RUNNING
                admitted.append(seq)
            self.stats.num_waiting = len(self.waiting)
        self.running.extend(admitted)
        self.stats.num_running = len(self.running)
        return admitted

    def _prefill(self, seq: Sequence) -> None:
        prompt = torch.tensor(seq.prompt_ids, dtype=torch.long, device=self.device)
        slots = torch.tensor([seq.slot], dtype=torch.long, device=self.device)
        for start in range(0, len(prompt), self.prefill_chunk_tokens):
            chunk = prompt[start : start + self.prefill_chunk_tokens]
            positions = torch.arange(start, start + len(chunk), dtype=torch.long, device=self.device)
            logits = self.model(chunk[None, :], positions[None, :], slots, last_only=True)
        self.stats.num_prompt_tokens += len(prompt)
        if seq.params.repetition_penalty != 1.0:
            seen = self._seen_rows(logits.shape[-1])
            seen[seq.slot] = False
            seen[seq.slot, prompt] = True
        self._sample_and_append([seq], logits[:, -1, :])

    def _decode(self, batch: list[Sequence]) -> None:
        tokens = torch.tensor([[s.last_token_id] for s in batch], dtype=torch.long, device=self.device)
        positions = torch.tensor([[s.num_tokens - 1] for s in batch], dtype=torch.long, device=self.device)
        slots = torch.tensor([s.slot for s in batch], dtype=torch.long, device=self.device)
        logits = self.model(tokens, positions, slots)
        self._sample_and_append(batch, logits[:, -1, :])

    def _sample_and_append(self, batch: list[Sequence], logits: torch.Tensor) -> None:
        slots = [s.slot for s in batch]
        seen = self._seen[slots] if self._seen is not None else None
        next_ids = choose_tokens(
            logits, [s.params for s in batch], [s.generator for s in batch], seen
        ).tolist()
        self.stats.num_generated_tokens += len(next_ids)
        logprobs = self._logprobs(batch, logits, next_ids)
        for seq, token_id in zip(batch, next_ids):
            if self._seen is not None:
                self._seen[seq.slot, token_id] = True
            seq.append(token_id, is_end_of_turn=token_id in self.end_of_turn_ids, logprob=logprobs.get(seq.request_id))

    @staticmethod
    def _logprobs(batch: list[Sequence], logits: torch.Tensor, next_ids: list[int]) -> dict[int, TokenLogprob]:
        """For the requests that asked for log-probabilities (none, usually: then no extra work)."""
        rows = [row for row, seq in enumerate(batch) if seq.params.top_logprobs is not None]
        if not rows:
            return {}
        found = token_logprobs(logits[rows], [next_ids[r] for r in rows],
                               [batch[r].params.top_logprobs for r in rows])
        return {batch[r].request_id: record for r, record in zip(rows, found)}

    def _seen_rows(self, vocab_size: int) -> torch.Tensor:
        if self._seen is None:
            self._seen = torch.zeros(self.max_batch_size, vocab_size, dtype=torch.bool, device=self.device)
        return self._seen

    def _drop_cancelled(self) -> None:
        with self._lock:
            cancelled_waiting = [s for s in self.waiting if s.cancel_event.is_set()]
            for seq in cancelled_waiting:
                self.waiting.remove(seq)
            self.stats.num_waiting = len(self.waiting)
        for seq in [*cancelled_waiting, *(s for s in self.running if s.cancel_event.is_set())]:
            seq.finish_early(FinishReason.CANCELLED)
            seq.status = SequenceStatus.FINISHED
        self._release_finished()

    def _release_finished(self) -> None:
        still_running = []
        for seq in self.running:
            if seq.finish_reason is None:
                still_running.append(seq)
                continue
            seq.status = SequenceStatus.FINISHED
            self.free_slots.append(seq.slot)
            seq.slot = None
        self.running = still_running
        self.stats.num_running = len(self.running)
