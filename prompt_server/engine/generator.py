"""Batched decoding with a KV cache, one llguidance matcher and one RNG per sequence.

`Generator.generate(requests)` decodes a batch to completion: a left-padded
prefill, then one forward step per token for all unfinished rows; finished
rows are dropped from the batch (and the cache). The next step's grammar
masks are computed in a helper thread while the model runs.

`BatchScheduler` feeds it: requests from many HTTP threads queue up, and a
single scheduler thread takes whatever is waiting (up to max_batch_size) as
the next batch, so throughput grows with concurrency and no two threads ever
touch the model at once.

Sampling draws exactly one uniform number per step from the sequence's own
seeded generator (inverse-CDF sampling), so a seed gives the same answer
whether the request runs alone or batched with others.
"""
from __future__ import annotations

import queue
import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, List, Optional

import llguidance
import torch

from .constraint import MaskBuilder, compile_grammar, make_ll_tokenizer
from .model_loader import LoadedModel


@dataclass
class GenerationRequest:
    prompt_ids: List[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None
    grammar: Optional[str] = None   # from Generator.compile(); None = unconstrained
    ignore_eos: bool = False        # benchmarks: always decode max_tokens (unconstrained only)


@dataclass
class GenerationResult:
    token_ids: List[int]
    text: str
    finish_reason: str              # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    decode_seconds: float = 0.0     # wall time of the decode steps (prefill excluded)


class GenerationError(RuntimeError):
    pass


@dataclass(eq=False)
class _Sequence:
    index: int                      # position in the batch as submitted
    request: GenerationRequest
    matcher: Optional[llguidance.LLMatcher]
    rng: torch.Generator
    tokens: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None


class Generator:
    def __init__(self, loaded: LoadedModel, max_batch_size: int = 8):
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.ll_tokenizer = make_ll_tokenizer(loaded.tokenizer, loaded.vocab_size, loaded.eos_ids)
        self.masks = MaskBuilder(loaded.vocab_size, max_batch_size, loaded.device)
        self._eos = set(loaded.eos_ids)
        self._mask_thread = ThreadPoolExecutor(1, thread_name_prefix="grammar-mask")

    def compile(self, *, regex=None, json_schema=None) -> str:
        return compile_grammar(self.ll_tokenizer, regex=regex, json_schema=json_schema)

    @torch.inference_mode()
    def generate(self, requests: List[GenerationRequest],
                 on_finish: Optional[Callable[[int, GenerationResult], None]] = None) -> List[GenerationResult]:
        """Decode a batch; on_finish(i, result) is called as soon as request i is done."""
        if not 0 < len(requests) <= self.max_batch_size:
            raise ValueError(f"batch of {len(requests)} requests; allowed 1..{self.max_batch_size}")
        seqs = [self._start(i, r) for i, r in enumerate(requests)]
        model, device = self.loaded.model, self.loaded.device

        lengths = [len(r.prompt_ids) for r in requests]
        width = max(lengths)
        ids = torch.full((len(seqs), width), self.loaded.pad_id, dtype=torch.long)
        attention = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, prompt in enumerate(r.prompt_ids for r in requests):
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention[row, width - len(prompt):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        ids, attention, positions = ids.to(device), attention.to(device), positions.to(device)

        active = seqs
        pending_masks = self._mask_thread.submit(self.masks.fill, [s.matcher for s in active])
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions,
                    use_cache=True, logits_to_keep=1)
        cache, logits = out.past_key_values, out.logits[:, -1, :]
        last_pos = positions[:, -1]
        started = time.perf_counter()
        while True:
            pending_masks.result()
            self.masks.apply(logits, [row for row, s in enumerate(active) if s.matcher is not None])
            next_tokens = self._sample(logits, active)
            for seq, token in zip(active, next_tokens, strict=False):
                self._advance(seq, token)
                if seq.finish_reason is not None and on_finish is not None:
                    on_finish(seq.index, self._result(seq, time.perf_counter() - started))
            keep = [row for row, s in enumerate(active) if s.finish_reason is None]
            if not keep:
                break
            if len(keep) < len(active):
                index = torch.tensor(keep, device=device)
                cache.batch_select_indices(index)
                attention, last_pos = attention[index], last_pos[index]
                active = [active[row] for row in keep]
                next_tokens = [next_tokens[row] for row in keep]
            # the grammar masks for the next step are computed while the model runs
            pending_masks = self._mask_thread.submit(self.masks.fill, [s.matcher for s in active])
            attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=1)
            last_pos = last_pos + 1
            out = model(input_ids=torch.tensor(next_tokens, device=device)[:, None],
                        attention_mask=attention, position_ids=last_pos[:, None],
                        past_key_values=cache, use_cache=True)
            logits = out.logits[:, -1, :]
        elapsed = time.perf_counter() - started
        return [self._result(s, elapsed) for s in seqs]  # decode_seconds: the whole batch's

    def _start(self, index: int, request: GenerationRequest) -> _Sequence:
        matcher = None
        if request.grammar is not None:
            matcher = llguidance.LLMatcher(self.ll_tokenizer, request.grammar, log_level=0)
            if matcher.is_error():
                raise GenerationError(f"grammar rejected: {matcher.get_error()}")
        rng = torch.Generator()
        rng.manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        return _Sequence(index, request, matcher, rng)

    def _sample(self, logits: torch.Tensor, active: List[_Sequence]) -> List[int]:
        """One token per row: greedy at temperature 0, else inverse-CDF with the row's own RNG."""
        logits = logits.float()
        temps = [s.request.temperature for s in active]
        greedy = logits.argmax(dim=-1).tolist()
        if all(t <= 0 for t in temps):
            return greedy
        scale = torch.tensor([t if t > 0 else 1.0 for t in temps], device=logits.device)
        probs = torch.softmax(logits / scale[:, None], dim=-1)
        draws = torch.cat([torch.rand(1, generator=s.rng) for s in active]).to(logits.device)
        tokens = []
        for row, seq in enumerate(active):
            if temps[row] <= 0:
                tokens.append(greedy[row])
                continue
            p = probs[row]
            if seq.request.top_p < 1.0:
                sorted_p, order = torch.sort(p, descending=True)
                cut = int((sorted_p.cumsum(0) < seq.request.top_p).sum()) + 1
                sorted_p = sorted_p[:cut]
                cdf = sorted_p.cumsum(0)
                pick = int(torch.searchsorted(cdf, draws[row] * cdf[-1]).clamp(max=cut - 1))
                tokens.append(int(order[pick]))
            else:
                cdf = p.cumsum(0)
                tokens.append(int(torch.searchsorted(cdf, draws[row] * cdf[-1]).clamp(max=p.shape[0] - 1)))
        return tokens

    def _advance(self, seq: _Sequence, token: int) -> None:
        seq.tokens.append(token)
        if seq.matcher is not None:
            if not seq.matcher.consume_token(token):
                raise GenerationError(f"grammar matcher failed: {seq.matcher.get_error()}")
            if seq.matcher.is_stopped():
                seq.finish_reason = "stop"
        elif token in self._eos and not seq.request.ignore_eos:
            seq.finish_reason = "stop"
        if seq.finish_reason is None and len(seq.tokens) >= seq.request.max_tokens:
            seq.finish_reason = "length"

    def _result(self, seq: _Sequence, elapsed: float) -> GenerationResult:
        tokens = seq.tokens
        text_tokens = tokens[:-1] if tokens and tokens[-1] in self._eos and not seq.request.ignore_eos else tokens
        text = self.loaded.tokenizer.decode(text_tokens, skip_special_tokens=True)
        return GenerationResult(token_ids=tokens, text=text, finish_reason=seq.finish_reason or "length",
                                prompt_tokens=len(seq.request.prompt_ids),
                                completion_tokens=len(tokens), decode_seconds=elapsed)


class BatchScheduler:
    """One thread owns the model; requests from any thread are batched together."""

    def __init__(self, generator: Generator, gather_seconds: float = 0.01):
        self.generator = generator
        self.gather_seconds = gather_seconds  # lets requests sent together land in one batch
        self._queue: queue.Queue[Optional[tuple]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._thread.start()

    def submit(self, request: GenerationRequest) -> Future[GenerationResult]:
        future: Future[GenerationResult] = Future()
        self._queue.put((request, future))
        return future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.gather_seconds
            while len(batch) < self.generator.max_batch_size:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            futures = [future for _, future in batch]

            def finish(index: int, result: GenerationResult, futures=futures) -> None:
                futures[index].set_result(result)

            try:  # each answer goes out as soon as its sequence is done, not at the batch's end
                self.generator.generate([request for request, _ in batch], on_finish=finish)
            except Exception as exc:  # reported to every request still waiting; the server stays up
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
