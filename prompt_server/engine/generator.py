"""Continuous-batching decoding with a KV cache, one llguidance matcher and one RNG per sequence.

A `Batch` is the set of sequences being decoded together, with their shared
(left-padded) KV cache. `Generator.step(batch, new)` does one unit of work:
it prefills the newly admitted sequences (and samples their first token),
merges them into the running batch, then runs one decode step for every
row. Finished, failed and cancelled rows leave the batch at once, so a
request that arrives while others decode starts at the next step instead
of waiting for the whole batch.

Forced tokens: where the grammar leaves no choice of text (the keys, quotes
and separators of NewsPicGen's JSON), llguidance names the tokens that must
follow (its fast-forward tokens). They are appended without sampling (no
random draw) and, with `jump_forward`, fed to the model together with the
sampled token in one forward pass, like a short prefill on the running KV
cache; rows of one step may feed different numbers of tokens (right-aligned,
padding masked). Without `jump_forward` the same tokens are fed one per pass:
the same output from more passes (the reference the tests compare against).

Prefix cache: a prompt that starts like a recent one (the chat template and
the instruction's head are the same for every article) starts its prefill
from a copy of that start's KV (prefix_cache.py).

Isolation: anything that can go wrong for one row (its grammar matcher, its
sampling numbers) is caught per row and fails only that sequence. A failing
prefill fails only the sequences being admitted; a failing decode forward
fails the rows of that step (there is no way to tell which row caused it).

Sampling draws exactly one uniform number per sampled token from the
sequence's own seeded generator (inverse-CDF sampling), so a seed gives the
same answer whether the request runs alone or batched with others, as far
as the kernels round alike: they do on the small test model (the tests check
it). At the 1.5B model's widths, bf16 matrix products of different row
counts (a batch, a prefill of only the uncached part) round differently, and
a near-flat distribution then samples another token (docs/performance.md).
"""
from __future__ import annotations

import inspect
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import llguidance
import torch

from . import kv_cache
from .constraint import MaskBuilder, compile_grammar, make_ll_tokenizer
from .model_loader import LoadedModel
from .prefix_cache import Prefix, PrefixCache

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
    cached_tokens: int = 0          # prompt tokens taken from the prefix cache
    forced_tokens: int = 0          # output tokens the grammar forced (not sampled)
    forward_passes: int = 0         # model calls this sequence took part in, prefill included


class GenerationError(RuntimeError):
    pass


@dataclass
class EngineStats:
    """Running totals since start (read by /metrics; written by the scheduler thread only)."""
    forward_passes: int = 0
    prompt_tokens: int = 0          # prompt tokens of admitted sequences
    cached_prompt_tokens: int = 0   # of those, copied from the prefix cache instead of computed
    generation_tokens: int = 0      # output tokens, forced ones included
    forced_tokens: int = 0


@dataclass(eq=False)
class Sequence:
    """One request's decoding state; owned by the thread that runs Generator.step."""
    request: GenerationRequest
    matcher: Optional[llguidance.LLMatcher]
    rng: torch.Generator
    on_token: Optional[Callable[[Sequence], None]] = None   # after each new token
    on_finish: Optional[Callable[[Sequence], None]] = None  # once: result or error is set
    tokens: List[int] = field(default_factory=list)
    todo: List[int] = field(default_factory=list)  # decided tokens whose KV is not computed yet
    finish_reason: Optional[str] = None
    error: Optional[BaseException] = None
    result: Optional[GenerationResult] = None
    cancelled: bool = False         # set from any thread; the row leaves at the next step
    started: float = 0.0
    cached_tokens: int = 0
    forced_tokens: int = 0
    forward_passes: int = 0
    created: float = field(default_factory=time.perf_counter)
    first_token_at: Optional[float] = None  # when the first sampled token was picked (time to first token)

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


def _cache_keyword(model: torch.nn.Module) -> str:
    """transformers 5.x calls the KV cache argument `cache` (`past_key_values` goes in 5.40); 4.x the old name."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


class Generator:
    def __init__(self, loaded: LoadedModel, max_batch_size: int = 8, *, jump_forward: bool = True,
                 prefix_cache_tokens: int = 4096):
        self.loaded = loaded
        self.max_batch_size = max_batch_size
        self.jump_forward = jump_forward
        self.prefix_cache = PrefixCache(prefix_cache_tokens)
        self.stats = EngineStats()
        self.ll_tokenizer = make_ll_tokenizer(loaded.tokenizer, loaded.vocab_size, loaded.eos_ids)
        self.masks = MaskBuilder(loaded.vocab_size, max_batch_size, loaded.device)
        self._eos = set(loaded.eos_ids)
        self._eos_index = torch.tensor(sorted(self._eos), device=loaded.device)
        self._cache_kw = _cache_keyword(loaded.weights())
        self._mask_thread = ThreadPoolExecutor(1, thread_name_prefix="grammar-mask")
        self.tokenizer_lock = threading.Lock()  # HF fast tokenizers are not safe across threads

    def unload(self) -> bool:
        """Free the model's memory (keep-alive, POST /unload); the next forward pass loads it again."""
        self.prefix_cache.clear()
        return self.loaded.unload()

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
        groups: Dict[Tuple[int, int], Tuple[Optional[Prefix], int, List[Sequence]]] = {}
        for seq in new:
            seq.todo = list(seq.request.prompt_ids)
            self.stats.prompt_tokens += len(seq.todo)
            try:
                self._extend_forced(seq)  # a grammar may force the answer's first tokens
            except Exception as exc:
                self.fail(seq, exc if isinstance(exc, GenerationError) else GenerationError(str(exc)))
                continue
            if seq.finish_reason is not None:  # forced to the end (or to max_tokens) without the model
                self.finish(seq)
                continue
            prefix, length = self.prefix_cache.lookup(seq.request.prompt_ids)
            groups.setdefault((id(prefix), length), (prefix, length, []))[2].append(seq)
        for prefix, length, seqs in groups.values():
            admitted = self._prefill(seqs, prefix, length)
            if admitted.seqs:
                kv_cache.merge(batch, admitted)

    def _prefill(self, seqs: List[Sequence], prefix: Optional[Prefix], cached: int) -> Batch:
        """Compute the KV of `seqs` past their first `cached` tokens (copied from `prefix`)."""
        device, rows = self.loaded.device, len(seqs)
        # the prompt is one pass in both modes; forced tokens after it ride along only when jumping
        feeds = [s.todo[cached:] if self.jump_forward else s.todo[cached:len(s.request.prompt_ids)]
                 for s in seqs]
        width = max(len(f) for f in feeds)
        ids = torch.full((rows, width), self.loaded.pad_id, dtype=torch.long)
        attention = torch.zeros((rows, cached + width), dtype=torch.long)
        attention[:, :cached] = 1
        for row, feed in enumerate(feeds):
            ids[row, width - len(feed):] = torch.tensor(feed, dtype=torch.long)
            attention[row, cached + width - len(feed):] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)[:, cached:]
        ids, attention, positions = ids.to(device), attention.to(device), positions.to(device)
        sampling = [len(s.todo) == cached + len(f) for s, f in zip(seqs, feeds, strict=True)]
        pending = self._mask_thread.submit(self.masks.fill, [s.matcher if go else None
                                                              for s, go in zip(seqs, sampling, strict=True)])
        try:  # the weights load here again after an unload (keep-alive)
            cache = self._new_cache(prefix, cached, rows)
            out = self.loaded.weights()(input_ids=ids, attention_mask=attention, position_ids=positions,
                                    use_cache=True, logits_to_keep=1, **{self._cache_kw: cache})
        except Exception as exc:  # only the newcomers fail; the running batch is untouched
            pending.result()
            for seq in seqs:
                self.fail(seq, GenerationError(f"prefill failed: {type(exc).__name__}: {exc}"))
            return Batch()
        self.stats.forward_passes += 1
        now = time.perf_counter()
        for row, seq in enumerate(seqs):
            seq.started = now  # decode_seconds leaves the prefill out
            seq.cached_tokens = cached
            seq.forward_passes += 1
            seq.todo = seq.todo[cached + len(feeds[row]):]
            self.stats.cached_prompt_tokens += cached
            self._remember_prompt(seq, cache, row, first_column=cached + width - len(feeds[row]), cached=cached)
        admitted = Batch(list(seqs), cache, attention, positions[:, -1])
        self._sample_and_advance(admitted, out.logits[:, -1, :], pending, sampling)
        return admitted

    def _new_cache(self, prefix: Optional[Prefix], cached: int, rows: int):
        from transformers import DynamicCache

        try:
            cache = DynamicCache(config=getattr(self.loaded.weights(), "config", None))
        except TypeError:  # older signatures
            cache = DynamicCache()
        if prefix is not None:
            for layer, (keys, values) in enumerate(prefix.layers):
                cache.update(keys[None, :, :cached].expand(rows, -1, -1, -1).contiguous(),
                             values[None, :, :cached].expand(rows, -1, -1, -1).contiguous(), layer)
        return cache

    def _remember_prompt(self, seq: Sequence, cache, row: int, first_column: int, cached: int) -> None:
        """Store this row's prompt KV: the `cached` prefix columns, then its own prompt columns."""
        prompt = seq.request.prompt_ids
        if not self.prefix_cache.wants(prompt):
            return
        computed = len(prompt) - cached
        layers = []
        for layer in kv_cache.layers_of(cache):
            parts = [(t[row, :, :cached], t[row, :, first_column:first_column + computed])
                     for t in (layer.keys, layer.values)]
            layers.append((torch.cat(parts[0], dim=1).clone(), torch.cat(parts[1], dim=1).clone()))
        self.prefix_cache.store(prompt, layers)

    def _decode(self, batch: Batch) -> None:
        device = self.loaded.device
        feeds = [s.todo if self.jump_forward else s.todo[:1] for s in batch.seqs]
        width = max(len(f) for f in feeds)
        sampling = [len(s.todo) == len(f) for s, f in zip(batch.seqs, feeds, strict=True)]
        # the grammar masks for this step are computed while the model runs
        pending = self._mask_thread.submit(self.masks.fill, [s.matcher if go else None
                                                              for s, go in zip(batch.seqs, sampling, strict=True)])
        attention, last_pos = batch.attention, batch.last_pos
        assert attention is not None and last_pos is not None  # a batch with rows has both (kv_cache.merge)
        rows = len(batch)
        ids = torch.full((rows, width), self.loaded.pad_id, dtype=torch.long)
        fresh = torch.zeros((rows, width), dtype=torch.long)
        offsets = torch.zeros((rows, width), dtype=torch.long)
        lengths = torch.tensor([len(f) for f in feeds], dtype=torch.long)
        for row, feed in enumerate(feeds):  # right-aligned: every row's last fed token is the last column
            ids[row, width - len(feed):] = torch.tensor(feed, dtype=torch.long)
            fresh[row, width - len(feed):] = 1
            offsets[row, width - len(feed):] = torch.arange(1, len(feed) + 1)
        batch.attention = torch.cat([attention, fresh.to(device)], dim=1)
        positions = last_pos[:, None] + offsets.clamp(min=1).to(device)  # padding: any position, it is masked
        batch.last_pos = last_pos + lengths.to(device)
        try:
            out = self.loaded.weights()(input_ids=ids.to(device), attention_mask=batch.attention,
                                    position_ids=positions, use_cache=True, logits_to_keep=1,
                                    **{self._cache_kw: batch.cache})
        except Exception as exc:
            pending.result()
            for seq in batch.seqs:
                self.fail(seq, GenerationError(f"decode step failed: {type(exc).__name__}: {exc}"))
            batch.seqs, batch.cache, batch.attention, batch.last_pos = [], None, None, None
            return
        self.stats.forward_passes += 1
        for seq, feed in zip(batch.seqs, feeds, strict=True):
            seq.todo = seq.todo[len(feed):]
            seq.forward_passes += 1
        self._sample_and_advance(batch, out.logits[:, -1, :], pending, sampling)

    def _sample_and_advance(self, batch: Batch, logits: torch.Tensor, pending, sampling: List[bool]) -> None:
        """Mask, sample, feed matchers, report; rows that finish or fail leave `batch`.

        Rows whose `sampling` is False still have forced tokens to feed (one per pass, without
        jump_forward): their logits are not used.
        """
        pending.result()
        seqs = batch.seqs
        rows = [row for row, go in enumerate(sampling) if go]
        if rows:
            self.masks.apply(logits, [row for row in rows if seqs[row].matcher is not None])
            logits = logits.float()
            self._hold_eos(logits, seqs, rows)
            greedy = logits.argmax(dim=-1).tolist()
        for row in rows:
            seq = seqs[row]
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

    def _hold_eos(self, logits: torch.Tensor, seqs: List[Sequence], rows: List[int]) -> None:
        """min_tokens: no EOS before the minimum, unless the grammar allows nothing else."""
        for row in rows:
            if len(seqs[row].tokens) < seqs[row].request.min_tokens:
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
        if seq.first_token_at is None:
            seq.first_token_at = time.perf_counter()
        seq.tokens.append(token)
        seq.todo = [token]
        self.stats.generation_tokens += 1
        if seq.matcher is not None:
            if not seq.matcher.consume_token(token):
                raise GenerationError(f"grammar matcher failed: {seq.matcher.get_error()}")
        elif token in self._eos and not seq.request.ignore_eos:
            seq.finish_reason = "stop"
        self._check_end(seq)
        self._extend_forced(seq)

    def _extend_forced(self, seq: Sequence) -> None:
        """Append the tokens the grammar forces next: taken as they are, no sampling, no random draw."""
        if seq.matcher is None or seq.finish_reason is not None:
            return
        forced = seq.matcher.compute_ff_tokens()[:seq.request.max_tokens - len(seq.tokens)]
        if not forced:
            return
        if not seq.matcher.consume_tokens(forced):
            raise GenerationError(f"grammar matcher failed on its forced tokens: {seq.matcher.get_error()}")
        seq.tokens.extend(forced)
        seq.todo.extend(forced)
        seq.forced_tokens += len(forced)
        self.stats.generation_tokens += len(forced)
        self.stats.forced_tokens += len(forced)
        self._check_end(seq)

    def _check_end(self, seq: Sequence) -> None:
        if seq.matcher is not None and seq.matcher.is_stopped():
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
                                decode_seconds=time.perf_counter() - seq.started,
                                cached_tokens=seq.cached_tokens, forced_tokens=seq.forced_tokens,
                                forward_passes=seq.forward_passes)
