"""GET /metrics: the engine's counters in Prometheus' text format (what SGLang and vLLM serve there).

Token and pass counters are read from the generator's running totals at
scrape time (one place counts them); request outcomes and time to first
token are recorded by the HTTP layer as requests end. Each service has its
own registry, so several engines in one process (tests) do not collide.
"""
from __future__ import annotations

from typing import Iterator, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .generator import Sequence
from .scheduler import Scheduler

# seconds; a CPU prefill of a long article takes seconds, a GPU one tens of milliseconds
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


class _EngineCollector:
    def __init__(self, scheduler: Scheduler):
        self.scheduler = scheduler

    def collect(self) -> Iterator[Metric]:
        stats = self.scheduler.generator.stats
        for name, doc, value in (
                ("prompt_tokens", "Prompt tokens of admitted requests", stats.prompt_tokens),
                ("cached_prompt_tokens", "Prompt tokens taken from the prefix cache instead of computed",
                 stats.cached_prompt_tokens),
                ("generation_tokens", "Output tokens, forced ones included", stats.generation_tokens),
                ("forced_tokens", "Output tokens the grammar forced (appended without sampling)",
                 stats.forced_tokens),
                ("forward_passes", "Model forward passes (prefill and decode)", stats.forward_passes)):
            yield CounterMetricFamily(f"newspicgen_{name}", doc, value=value)
        yield GaugeMetricFamily("newspicgen_num_running_reqs", "Sequences in the running batch",
                                value=self.scheduler.running)
        yield GaugeMetricFamily("newspicgen_num_waiting_reqs", "Sequences waiting for a batch slot",
                                value=self.scheduler.waiting)
        yield GaugeMetricFamily("newspicgen_model_loaded", "1 while the weights are in memory (keep-alive)",
                                value=int(self.scheduler.generator.loaded.is_loaded))
        yield GaugeMetricFamily("newspicgen_prefix_cache_tokens", "Prompt tokens whose KV the prefix cache holds",
                                value=self.scheduler.generator.prefix_cache.stored_tokens)


class EngineMetrics:
    def __init__(self, scheduler: Scheduler):
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(scheduler))
        self.requests = Counter("newspicgen_requests", "Chat completion requests by outcome "
                                "(stop, length, abort, error, rejected)", ["status"], registry=self.registry)
        self.ttft = Histogram("newspicgen_time_to_first_token_seconds",
                              "From the request's arrival at the scheduler to its first sampled token",
                              buckets=TTFT_BUCKETS, registry=self.registry)

    def request_done(self, status: str) -> None:
        self.requests.labels(status=status).inc()

    def sequence_done(self, seq: Sequence) -> None:
        first: Optional[float] = seq.first_token_at
        if first is not None:
            self.ttft.observe(first - seq.created)

    def render(self) -> bytes:
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST
