"""Load on the embedded engine's HTTP server: N concurrent clients, errors, p50/p95, throughput.

    python benchmarks/serving_load.py [--clients 32] [--requests 96] [--max-tokens 32] [--url URL]

Without --url it builds the tiny random test model (tests/tiny_model.py) and
starts a real `serve --engine local` on 127.0.0.1 (stopped at the end). With
--url it loads a server you started yourself; only loopback addresses are
accepted, so this cannot be pointed at someone else's machine. Each client
sends its requests one after another (concurrency is bounded by --clients);
one poison request (temperature 1e308) goes out among them and must be the
only failure. Prints errors by kind, latency percentiles and tokens/s.
"""
from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prompt_server.schema import output_regex  # noqa: E402
from tests.support.local_server import running_local  # noqa: E402

NEWS = ("以下是一篇新闻，标题“候鸟南迁 湿地公园观鸟人数创新高”。"
        "新闻内容：随着气温下降，大批白鹭、灰鹤和野鸭陆续飞抵城郊湿地公园越冬。"
        "，请根据新闻内容生成绘画指令，图片要符合新闻内容，并且有创意。")


def loopback_only(url: str) -> str:
    host = urlparse(url).hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise SystemExit(f"--url {url}: only loopback servers (127.0.0.1, ::1, localhost) are load-tested")
    return url.rstrip("/")


@contextlib.contextmanager
def tiny_server(max_batch_size: int):
    from tests.support.tiny_model import build_tiny_model

    with tempfile.TemporaryDirectory(prefix="newspicgen-load-") as tmp:
        model = build_tiny_model(Path(tmp) / "model")
        with running_local(model, "--max-batch-size", str(max_batch_size),
                           threads=os.environ.get("OMP_NUM_THREADS", "1"), timeout=300) as url:
            yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a server already running on loopback (default: start the tiny model)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (1..512)")
    parser.add_argument("--requests", type=int, default=96, help="good requests in all")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--constrained", action="store_true", help="send output_regex() (answers vary in length)")
    parser.add_argument("--max-batch-size", type=int, default=16, help="for the server started here")
    parser.add_argument("--api-key", default=os.environ.get("NEWSPICGEN_API_KEY"))
    args = parser.parse_args()
    if not 1 <= args.clients <= 512:
        raise SystemExit("--clients must be between 1 and 512")
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    def body(seed: int, **extra):
        fields = {"model": "newspicgen", "messages": [{"role": "user", "content": NEWS}],
                  "max_tokens": args.max_tokens, "temperature": 0.7, "seed": seed}
        fields.update({"regex": output_regex()} if args.constrained else {"ignore_eos": True})
        fields.update(extra)
        return fields

    with (contextlib.nullcontext(loopback_only(args.url)) if args.url else tiny_server(args.max_batch_size)) as url:
        requests.post(url + "/v1/chat/completions", json=body(0, max_tokens=2), headers=headers, timeout=120)
        jobs = [("good", body(i + 1)) for i in range(args.requests)]
        jobs.insert(len(jobs) // 2, ("poison", body(-1, temperature=1e308)))
        local = threading.local()
        results = []

        def send(job):
            kind, payload = job
            session = getattr(local, "session", None) or requests.Session()
            local.session = session
            begin = time.perf_counter()
            try:
                response = session.post(url + "/v1/chat/completions", json=payload, headers=headers, timeout=600)
                outcome = response.status_code
                tokens = response.json().get("usage", {}).get("completion_tokens", 0) if outcome == 200 else 0
            except requests.RequestException as exc:
                outcome, tokens = type(exc).__name__, 0
            results.append((kind, outcome, time.perf_counter() - begin, tokens))

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(send, jobs))
        wall = time.perf_counter() - started

    good = [r for r in results if r[0] == "good"]
    ok = [r for r in good if r[1] == 200]
    errors = {}
    for kind, outcome, _, _ in results:
        if outcome != 200:
            errors[f"{kind}:{outcome}"] = errors.get(f"{kind}:{outcome}", 0) + 1
    latencies = sorted(r[2] for r in ok)
    p95 = latencies[min(len(latencies) - 1, int(round(0.95 * (len(latencies) - 1))))] if latencies else float("nan")
    tokens = sum(r[3] for r in ok)
    print(f"serving load: {len(jobs)} requests ({args.requests} good + 1 poison), {args.clients} concurrent clients, "
          f"max_tokens {args.max_tokens}, {'constrained' if args.constrained else 'unconstrained (ignore_eos)'}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"  good answered 200: {len(ok)}/{len(good)}   errors: {errors or 'none'}")
    print(f"  latency p50 {1000 * statistics.median(latencies):.0f} ms, p95 {1000 * p95:.0f} ms, "
          f"max {1000 * latencies[-1]:.0f} ms" if latencies else "  no successful requests")
    print(f"  throughput {len(ok) / wall:.2f} requests/s, {tokens / wall:.1f} tokens/s over {wall:.1f} s")
    poison_ok = errors == {"poison:400": 1}
    print(f"  poison request: {'400 for it alone' if poison_ok else 'NOT isolated'}")
    return 0 if poison_ok and len(ok) == len(good) else 1


if __name__ == "__main__":
    sys.exit(main())
