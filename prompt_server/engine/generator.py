"""Continuous-batching decoding with a KV cache, one llguidance matcher and one RNG per sequence.

A `Batch` is the set of sequences being decoded together, with their shared
(left-padded) KV cache. `Generator.step(batch, new)` does one unit of work:
it prefills the newly admitted sequences (and samples their first token),
merges them into the running batch, then runs one decode step for every
row. Finished, failed and cancelled rows leave the batch at once, so a
request that arrives while others decode starts at the next step instead
of waiting for the whole batch.

Isolation: anything that can go wrong for one row (its grammar matcher, its
sampling numbers) is caught per row and fails only that sequence. A failing
prefill fails only the sequences being admitted; a failing decode forward
fails the rows of that step (there is no way to tell which row caused it).

Sampling draws exactly one uniform number per step from the sequence's own
seeded generator (inverse-CDF sampling), so a seed gives the same answer
whether the request runs alone or batched with others.
"""
from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import llguidance
import torch

from . import kv_cache
from .constraint import MaskBuilder, compile_grammar, make_ll_tokenizer
from .model_loader import LoadedModel

GREEDY_BELOW = 1e-6  # like SGLang: a temperature this small means greedy


@dataclass
class GenerationRequest:
    prompt_ids: List[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: Optional[int] = None
    grammar: Optional[str] = None   # from Generator.compile(); None = unconstrained
    ignore_eos: bool = False        # always decode max_tokens (unconstrained rows only)
    min_tokens: int = 0             # EOS is masked until this many tokens exist (SGLang's min_new_tokens)


@dataclass
class GenerationResult:
    token_ids: List[int]
    text: str
    finish_reason: str              # "stop" | "length" | "abort"
    prompt_tokens: int
    completion_tokens: int
    decode_seconds: float = 0.0     # wall time from the first decode step to this sequence's end


class GenerationError(RuntimeError):
    pass


@dataclass(eq=False)
class Sequence:
    """One request's decoding state; owned by the thread that runs Generator.step."""
    request: GenerationRequest
    matcher: Optional[llguidance.LLMatcher]
    rng: torch.Generator
    on_token: Optional[Callable[[Sequence], None]] = None   # after each new token
    on_finish: Optional[Callable[[Sequence], None]] = None  # once: result or error is set
    tokens: List[int] = field(default_factory=list)
    finish_reason: Optional[str] = None
    error: Optional[BaseException] = None
    result: Optional[GenerationResult] = None
    cancelled: bool = False         # set from any thread; the row leaves at the next step
    started: float = 0.0

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None


@dataclass
class Batch:
    """The running rows and their KV cache (rows are left-padded to a common width)."""
    seqs: List[Sequence] = field(default_factory=list)
    cache: object = None                        # a transformers DynamicCache
    attention: Optional[torch.Tensor] = None    # rows x width, 1 = real token
    last_pos: Optional[torch.Tensor] = None     # rows: position of each row's last fed token

    def __len__(self) -> int:
        return len(self.seqs)


class Generator:
    def __init__(self, loaded: LoadedModel, max_batch_size: int = 8):
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.ll_tokenizer = make_ll_tokenizer(loaded.tokenizer, loaded.vocab_size, loaded.eos_ids)
        self.masks = MaskBuilder(loaded.vocab_size, max_batch_size, loaded.device)
        self._eos = set(loaded.eos_ids)
        self._eos_index = torch.tensor(sorted(self._eos), device=loaded.device)
        self._mask_thread = ThreadPoolExecutor(1, thread_name_prefix="grammar-mask")
        self.tokenizer_lock = threading.Lock()  # HF fast tokenizers are not safe across threads

    def compile(self, *, regex=None, json_schema=None) -> str:
        return compile_grammar(self.ll_tokenizer, regex=regex, json_schema=json_schema)

    def new_sequence(self, request: GenerationRequest, *, on_token=None, on_finish=None) -> Sequence:
        matcher = None
        if request.grammar is not None:
            matcher = llguidance.LLMatcher(self.ll_tokenizer, request.grammar, log_level=0)
            if matcher.is_error():
                raise GenerationError(f"grammar rejected: {matcher.get_error()}")
        rng = torch.Generator()
        rng.manual_seed(request.seed if request.seed is not None else secrets.randbits(63))
        return Sequence(request, matcher, rng, on_token=on_token, on_finish=on_finish)

    # ---- the whole batch at once (benchmarks, tests) --------------------------------------

    def generate(self, requests: List[GenerationRequest],
                 on_finish: Optional[Callable[[int, GenerationResult], None]] = None) -> List[GenerationResult]:
        """Decode `requests` together to completion; on_finish(i, result) as soon as request i is done."""
        if not 0 < len(requests) <= self.max_batch_size:
            raise ValueError(f"batch of {len(requests)} requests; allowed 1..{self.max_batch_size}")
        index: Dict[int, int] = {}

        def finished(seq: Sequence) -> None:
            if on_finish is not None and seq.result is not None:
                on_finish(index[id(seq)], seq.result)

        seqs = [self.new_sequence(r, on_finish=finished) for r in requests]
        index.update({id(s): i for i, s in enumerate(seqs)})
        batch, new = Batch(), seqs
        while new or batch.seqs:
            self.step(batch, new)
            new = []
        results: List[GenerationResult] = []
        for seq in seqs:
            if seq.error is not None:
                raise seq.error
            assert seq.result is not None  # step() ran until every sequence has a result or an error
            results.append(seq.result)
        return results

    # ---- one step of continuous batching --------------------------------------------------

    @torch.inference_mode()
    def step(self, batch: Batch, new: List[Sequence]) -> None:
        """Admit `new` (prefill + first token), then decode one token for every running row."""
        self._drop_cancelled(batch)
        if new:
            self._admit(batch, new)
        if batch.seqs:
            self._decode(batch)

    def _admit(self, batch: Batch, new: List[Sequence]) -> None:
        device = self.loaded.device
        width = max(len(s.request.prompt_ids) for s in new)
        ids = torch.full((len(new), width), self.loaded.pad_id, dtype=torch.long)
        attention = torch.zeros((len(new), width), dtype=torch.long)
        for row, seq in enumerate(new):
            prompt = seq.request.prompt_ids
            ids[row, width - len(prompt):] = torch.tensor(prompt, dtype=torch.long)
            attention[row, width - len(prompt):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        ids, attention, positions = ids.to(device), attention.to(device), positions.to(device)
        pending = self._mask_thread.submit(self.masks.fill, [s.matcher for s in new])
        try:
            out = self.loaded.model(input_ids=ids, attention_mask=attention, position_ids=positions,
                                    use_cache=True, logits_to_keep=1)
        except Exception as exc:  # only the newcomers fail; the running batch is untouched
            pending.result()
            for seq in new:
                self.fail(seq, GenerationError(f"prefill failed: {type(exc).__name__}: {exc}"))
            return
        now = time.perf_counter()
        for seq in new:
            seq.started = now  # decode_seconds leaves the prefill out
        admitted = Batch(list(new), out.past_key_values, attention, positions[:, -1])
        self._sample_and_advance(admitted, out.logits[:, -1, :], pending)
        if admitted.seqs:
            kv_cache.merge(batch, admitted)

    def _decode(self, batch: Batch) -> None:
        device = self.loaded.device
        # the grammar masks for this step are computed while the model runs
        pending = self._mask_thread.submit(self.masks.fill, [s.matcher for s in batch.seqs])
        attention, last_pos = batch.attention, batch.last_pos
        assert attention is not None and last_pos is not None  # a batch with rows has both (kv_cache.merge)
        batch.attention = torch.cat([attention, attention.new_ones((len(batch), 1))], dim=1)
        batch.last_pos = last_pos + 1
        tokens = torch.tensor([s.tokens[-1] for s in batch.seqs], device=device)[:, None]
        try:
            out = self.loaded.model(input_ids=tokens, attention_mask=batch.attention,
                                    position_ids=batch.last_pos[:, None], past_key_values=batch.cache,
                                    use_cache=True)
        except Exception as exc:
            pending.result()
            for seq in batch.seqs:
                self.fail(seq, GenerationError(f"decode step failed: {type(exc).__name__}: {exc}"))
            batch.seqs, batch.cache, batch.attention, batch.last_pos = [], None, None, None
            return
        batch.cache = out.past_key_values
        self._sample_and_advance(batch, out.logits[:, -1, :], pending)

    def _sample_and_advance(self, batch: Batch, logits: torch.Tensor, pending) -> None:
        """Mask, sample, feed matchers, report; rows that finish or fail leave `batch`."""
        pending.result()
        seqs = batch.seqs
        self.masks.apply(logits, [row for row, s in enumerate(seqs) if s.matcher is not None])
        logits = logits.float()
        self._hold_eos(logits, seqs)
        greedy = logits.argmax(dim=-1).tolist()
        for row, seq in enumerate(seqs):
            try:
                token = self._pick(logits[row], seq, greedy[row])
                self._advance(seq, token)
            except Exception as exc:  # this row alone: a bad matcher state, non-finite numbers, ...
                self.fail(seq, exc if isinstance(exc, GenerationError)
                           else GenerationError(f"sampling failed: {type(exc).__name__}: {exc}"))
                continue
            if seq.on_token is not None:
                seq.on_token(seq)
            if seq.finish_reason is not None:
                self.finish(seq)
        keep = [row for row, s in enumerate(seqs) if not s.done]
        if len(keep) < len(seqs):
            kv_cache.select(batch, keep)

    def _hold_eos(self, logits: torch.Tensor, seqs: List[Sequence]) -> None:
        """min_tokens: no EOS before the minimum, unless the grammar allows nothing else."""
        for row, seq in enumerate(seqs):
            if len(seq.tokens) < seq.request.min_tokens:
                saved = logits[row, self._eos_index].clone()
                logits[row, self._eos_index] = float("-inf")
                if not torch.isfinite(logits[row]).any():
                    logits[row, self._eos_index] = saved

    def _pick(self, row_logits: torch.Tensor, seq: Sequence, greedy: int) -> int:
        """Greedy below GREEDY_BELOW, else inverse-CDF with the sequence's own RNG (one draw)."""
        request = seq.request
        if not torch.isfinite(row_logits).any():
            raise GenerationError("no token is allowed here (the grammar and the limits exclude every token)")
        if request.temperature < GREEDY_BELOW:
            return greedy
        probs = torch.softmax(row_logits / request.temperature, dim=-1)
        draw = float(torch.rand(1, generator=seq.rng))
        if request.top_p < 1.0:
            probs, order = torch.sort(probs, descending=True)
            cut = int((probs.cumsum(0) < request.top_p).sum()) + 1
            probs = probs[:cut]
        else:
            order = None
        cdf = probs.cumsum(0)
        total = float(cdf[-1])
        if not total > 0 or total != total:
            raise GenerationError(f"sampling numbers are not finite at temperature {request.temperature}")
        pick = int(torch.searchsorted(cdf, torch.tensor([draw * total])).clamp(max=cdf.shape[0] - 1))
        return int(order[pick]) if order is not None else pick

    def _advance(self, seq: Sequence, token: int) -> None:
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

    def _drop_cancelled(self, batch: Batch) -> None:
        keep = []
        for row, seq in enumerate(batch.seqs):
            if seq.cancelled:
                seq.finish_reason = "abort"
                self.finish(seq)
            else:
                keep.append(row)
        if len(keep) < len(batch.seqs):
            kv_cache.select(batch, keep)

    def finish(self, seq: Sequence) -> None:
        seq.result = self.result_of(seq)
        if seq.on_finish is not None:
            seq.on_finish(seq)

    def fail(self, seq: Sequence, exc: BaseException) -> None:
        seq.error = exc
        if seq.on_finish is not None:
            seq.on_finish(seq)

    def text_of(self, tokens: List[int], ignore_eos: bool = False) -> str:
        if tokens and tokens[-1] in self._eos and not ignore_eos:
            tokens = tokens[:-1]
        with self.tokenizer_lock:
            return self.loaded.tokenizer.decode(tokens, skip_special_tokens=True)

    def result_of(self, seq: Sequence) -> GenerationResult:
        tokens = list(seq.tokens)
        return GenerationResult(token_ids=tokens, text=self.text_of(tokens, seq.request.ignore_eos),
                                finish_reason=seq.finish_reason or "abort",
                                prompt_tokens=len(seq.request.prompt_ids), completion_tokens=len(tokens),
                                decode_seconds=time.perf_counter() - seq.started)
