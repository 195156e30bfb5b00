"""`newspicgen batch INPUT --out DIR`: a file of articles to prompts (and pictures).

Data flows one way:

    INPUT -> work queue -> N prompt workers (Pipeline) -> [1 picture worker -> WebUI] -> result queue
          -> the writer (the main thread) -> DIR/prompts.jsonl | DIR/failed.jsonl

Only the main thread writes, one fsync'd line per article, so Ctrl-C, SIGTERM
or a crash never leaves half a line and never loses a finished article. A rerun
skips ids already in prompts.jsonl and retries everything else, including the
ids in failed.jsonl, which ends each run holding only the still-failing ones.

Input rows that cannot be read are skipped and listed, with line and reason,
in DIR/bad_rows.jsonl (rewritten each run: fix them in INPUT, then rerun).
One run at a time per DIR: a lock file (DIR/.batch.lock, holding the PID) makes
a second run refuse; the OS drops the lock when its run ends or is killed.

Exit status: 0 all done, 1 some articles failed (rerun to retry them) or input
rows were skipped (see bad_rows.jsonl), 2 the run could not start or was stopped
(server or WebUI unreachable, bad credentials, DIR used by another run),
130 / 143 interrupted by SIGINT / SIGTERM.
"""
from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from newspicgen.batch_io import (
    Article,
    BadRow,
    InputError,
    JsonlLog,
    OutputLock,
    OutputLocked,
    read_articles,
    read_jsonl,
    rewrite_jsonl,
)
from newspicgen.batch_progress import Progress, Stats, percentile
from newspicgen.pipeline import Pipeline
from newspicgen.relevance import ScorerUnavailable, relevance_scorer
from newspicgen.webui_client import WebUIClient, WebUIError, safe_stem, save_picture
from prompt_server.client import PromptClient
from prompt_server.defaults import (
    DEFAULT_MODE,
    DEFAULT_SERVER_URL,
    DEFAULT_TIMEOUT_S,
    ENV_API_KEY,
    ENV_SERVER_URL,
    MODE_HELP,
    MODES,
)
from prompt_server.errors import (
    AuthenticationError,
    PromptServerError,
    RetryPolicy,
    ServerTimeout,
    ServerUnreachable,
)
from prompt_server.instruction import EmptyNewsError
from style_presets.availability import Availability
from style_presets.bases import BASE_CODES, DEFAULT_BASE, label
from style_presets.store import PresetNotFound, PresetStore

HELP = ("turn a JSONL/CSV file of articles into prompts (and pictures with --webui); "
        "resumable: rerun with the same --out to continue")

DEAD_AFTER = 3            # this many "unreachable" failures in a row -> check /health, stop if down
PROBE_RETRIES = 3         # start-up checks of a busy or restarting server: 4 tries over ~2-4 s


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="JSONL or CSV with id, title, content "
                        "(a missing id gets a stable one from the content)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder (one run at a time): prompts.jsonl, failed.jsonl, bad_rows.jsonl, "
                             "images/")
    parser.add_argument("--server", metavar="URL", default=None,
                        help=f"prompt server base URL (default: ${ENV_SERVER_URL} or {DEFAULT_SERVER_URL})")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help=f"API key of the prompt server (default: ${ENV_API_KEY})")
    parser.add_argument("--mode", choices=MODES, default=DEFAULT_MODE, help=MODE_HELP)
    parser.add_argument("--concurrency", type=_positive_int, default=4, metavar="N",
                        help="prompt requests in flight at once (default 4)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--preset", metavar="NAME", help="one style preset for every article")
    group.add_argument("--family", metavar="F", help="per-type default presets from this family")
    parser.add_argument("--base", choices=BASE_CODES, default=None,
                        help="the model family the pictures are for (per-type presets made for it are picked); "
                             "default: what the --webui has loaded, else sdxl")
    parser.add_argument("--preset-dir", metavar="DIR", default=None,
                        help="user preset folder (default: $NEWSPICGEN_PRESET_DIR or the per-user config dir)")
    parser.add_argument("--seed", type=int, default=None,
                        help="sampling seed for every prompt, and the picture seed with --webui")
    parser.add_argument("--best-of", type=_positive_int, default=1, metavar="N",
                        help="sample N prompts per article (seeds SEED..SEED+N-1) and keep the one most relevant "
                             "to the article; needs the eval extra (default 1: one sample)")
    parser.add_argument("--retries", type=_non_negative_int, default=2, metavar="N",
                        help="retries per article for temporary errors, with backoff (default 2)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"seconds to wait for one prompt (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--webui", metavar="URL", default=None,
                        help="also make pictures with this WebUI's /sdapi/v1/txt2img (start it with --api)")
    parser.add_argument("--webui-auth", metavar="USER:PASS", default=None,
                        help="credentials for a WebUI started with --api-auth")
    parser.add_argument("--webui-timeout", type=float, default=600.0, metavar="S",
                        help="seconds to wait for one picture (default 600)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


# ------------------------------------------------------------ what flows through

@dataclass
class Done:
    article: Any
    record: Dict[str, Any]
    latency_ms: float


@dataclass
class Failed:
    article: Any
    stage: str          # "input" | "prompt" | "compose" | "webui"
    error: BaseException
    fatal: bool = False  # the whole run should stop (bad credentials)


@dataclass
class Composed:
    """A prompt made and composed, waiting for its picture."""
    article: Any
    record: Dict[str, Any]
    latency_ms: float
    payload: Dict[str, Any]


class StartError(Exception):
    """The run cannot start; str() is the one line shown to the user."""


# ------------------------------------------------------------------ the command

def run(args: argparse.Namespace) -> int:
    try:
        batch = Batch.from_args(args)
    except StartError as exc:
        print(f"batch: {exc}", file=sys.stderr)
        return 2
    try:
        return batch.execute()
    finally:
        batch.lock.release()


@dataclass
class Batch:
    articles: List[Any]
    out: Path
    pipeline: Pipeline
    retry: RetryPolicy             # the client's; its `cancel` event is set on Ctrl-C
    lock: OutputLock               # held from before the first read of `out` to the end of the run
    preset: Optional[str] = None   # one preset for every article; None: the default for each type
    concurrency: int = 4
    seed: Optional[int] = None
    best_of: int = 1               # >1: N samples, the most relevant kept (Pipeline.best_of)
    webui: Optional[WebUIClient] = None
    available: Optional[Availability] = None  # the WebUI's LoRAs and embeddings (with --webui)
    base: Optional[str] = None     # the model family presets are picked for (--base, else the WebUI's)
    skipped: int = 0
    bad_rows: List[BadRow] = field(default_factory=list)
    prior_attempts: Dict[str, int] = field(default_factory=dict)

    @property
    def stop(self) -> threading.Event:
        """Set: take no new articles, and stop waiting to retry."""
        return self.retry.cancel

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Batch:
        """Everything that can be checked is checked here, before the first prompt is asked for."""
        if args.best_of > 1:
            try:  # load the scorer now: a missing extra must not surface after hours of sampling
                relevance_scorer()
            except ScorerUnavailable as exc:
                raise StartError(f"--best-of needs the relevance scorer: {exc}") from None
        articles, bad_rows = _read_input(args.input)
        store = _preset_store(args)
        try:
            webui = WebUIClient(args.webui, args.webui_auth, args.webui_timeout) if args.webui else None
        except ValueError as exc:
            raise StartError(str(exc)) from None
        retry = RetryPolicy(retries=args.retries)
        try:
            client = PromptClient(base_url=args.server, api_key=args.api_key, timeout=args.timeout,
                                  mode=args.mode, retry=retry)
        except ValueError as exc:  # a malformed --server URL
            raise StartError(str(exc)) from None
        pipeline = Pipeline(client, store, family=None if args.preset else args.family)

        out = Path(args.out)
        lock = _claim_output(out)
        try:  # from here on a refusal must let go of the folder
            batch = cls(articles=articles, out=out, pipeline=pipeline, retry=retry, lock=lock,
                        preset=args.preset, concurrency=args.concurrency, seed=args.seed, webui=webui,
                        bad_rows=bad_rows, best_of=args.best_of, base=args.base)
            batch._record_bad_rows(args.input)
            batch._load_state()
            if batch.todo:  # everything done already needs no server
                if webui is not None:  # first: a WebUI that is down would fail every article after its prompt
                    _probe(webui.check, _transient, retry)
                    # once per run: compose drops what the WebUI lacks, splits embedding names in model text
                    batch.available = webui.availability()
                    if batch.base is None:
                        batch.base = _webui_base(webui)
                _probe(lambda: _health(client), _transient, retry)
        except OSError as exc:
            lock.release()
            raise StartError(f"cannot write to {out}: {exc.strerror or exc}; free space or fix the folder") from None
        except BaseException:
            lock.release()
            raise
        return batch

    # -------------------------------------------------------------- resume state

    @property
    def prompts_path(self) -> Path:
        return self.out / "prompts.jsonl"

    @property
    def failed_path(self) -> Path:
        return self.out / "failed.jsonl"

    @property
    def images_dir(self) -> Path:
        return self.out / "images"

    @property
    def bad_rows_path(self) -> Path:
        return self.out / "bad_rows.jsonl"

    def _record_bad_rows(self, source: str) -> None:
        """The input's unreadable rows as of this run: a fixed row leaves the file on the next run."""
        if self.bad_rows:
            when = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            rewrite_jsonl(self.bad_rows_path, [{"input": source, "line": row.line, "reason": row.reason,
                                                "time": when} for row in self.bad_rows])
        elif self.bad_rows_path.exists():
            self.bad_rows_path.unlink()

    def _load_state(self) -> None:
        records, dropped, unreadable = read_jsonl(self.prompts_path)
        if dropped:
            print(f"batch: {self.prompts_path}: dropped a half-written last line left by a crash; "
                  "that article will be redone", file=sys.stderr)
        if unreadable:
            print(f"batch: {self.prompts_path}: ignoring unreadable line(s) {unreadable[:10]}; "
                  "their articles will be redone", file=sys.stderr)
        self.done_ids = {str(r["id"]) for r in records if "id" in r}
        before = len(self.articles)
        self.todo = [a for a in self.articles if a.id not in self.done_ids]
        self.skipped = before - len(self.todo)
        self.prior_attempts = {str(r["id"]): r["attempt"] if isinstance(r.get("attempt"), int) else 1
                               for r in self._compact_failed()}

    def _compact_failed(self) -> List[dict]:
        """failed.jsonl keeps the latest failure of each id that is still not done."""
        records, _, _ = read_jsonl(self.failed_path)
        latest: Dict[str, dict] = {}
        for record in records:
            if "id" in record:
                latest.pop(str(record["id"]), None)  # re-insert: order of the latest failure
                latest[str(record["id"])] = record
        kept = [r for key, r in latest.items() if key not in self.done_ids]
        if kept or self.failed_path.exists():
            if kept:
                rewrite_jsonl(self.failed_path, kept)
            else:
                self.failed_path.unlink()
        return kept

    # ------------------------------------------------------------------ running

    def execute(self) -> int:
        self.abandon = threading.Event()   # stop waiting for the ones in flight
        self.signal_code: Optional[int] = None
        self.fatal_message: Optional[str] = None
        work: queue.Queue = queue.Queue()
        for article in self.todo:
            work.put(article)
        self.results: queue.Queue = queue.Queue()
        self.pictures: queue.Queue = queue.Queue()

        workers = [threading.Thread(target=self._prompt_worker, args=(work,), daemon=True,
                                    name=f"batch-prompt-{i}")
                   for i in range(min(self.concurrency, max(1, len(self.todo))))]
        picture_worker = None
        if self.webui is not None:
            picture_worker = threading.Thread(target=self._picture_worker, args=(workers,),
                                              daemon=True, name="batch-picture")
        stats = Stats(total=len(self.todo))
        previous = self._install_signal_handlers()
        progress = Progress(stats)
        try:
            with JsonlLog(self.prompts_path) as prompts, JsonlLog(self.failed_path) as failed:
                for thread in workers:
                    thread.start()
                if picture_worker:
                    picture_worker.start()
                threads = workers + ([picture_worker] if picture_worker else [])
                self._write_results(threads, prompts, failed, stats, progress)
        except OSError as exc:  # disk full, folder removed: nothing more can be recorded
            self.stop.set()
            progress.close()
            print(f"batch: cannot write to {self.out}: {exc.strerror or exc}; free space or fix the folder, "
                  "then rerun the same command", file=sys.stderr)
            return 2
        finally:
            progress.close()
            self._restore_signal_handlers(previous)
        if self.failed_path.exists():
            self._compact_failed()
        self._print_summary(stats)
        if self.signal_code is not None:
            return 128 + self.signal_code
        if self.fatal_message:
            return 2
        return 1 if stats.failed or self.bad_rows else 0

    def _write_results(self, threads, prompts, failed, stats: Stats, progress: Progress) -> None:
        unreachable_in_a_row = 0
        while True:
            try:
                outcome = self.results.get(timeout=0.2)
            except queue.Empty:
                progress.tick()
                if self.abandon.is_set() or not any(t.is_alive() for t in threads):
                    break
                continue
            if isinstance(outcome, Done):
                prompts.append(outcome.record)
                self.done_ids.add(outcome.article.id)
                stats.done += 1
                stats.latencies.append(outcome.latency_ms)
                unreachable_in_a_row = 0
            else:
                failed.append(self._failure_record(outcome))
                stats.failed += 1
                if outcome.fatal and not self.fatal_message:
                    self._stop_fatal(_one_line(outcome.error))
                if isinstance(outcome.error, ServerUnreachable):
                    unreachable_in_a_row += 1
                    if unreachable_in_a_row >= DEAD_AFTER and not self.stop.is_set():
                        unreachable_in_a_row = 0
                        self._check_still_alive(outcome.error)
                else:
                    unreachable_in_a_row = 0
            progress.update()
        # A second Ctrl-C abandons in-flight work, but whatever already finished is written.
        while True:
            try:
                outcome = self.results.get_nowait()
            except queue.Empty:
                break
            if isinstance(outcome, Done):
                prompts.append(outcome.record)
                stats.done += 1
                stats.latencies.append(outcome.latency_ms)
            else:
                failed.append(self._failure_record(outcome))
                stats.failed += 1
        stats.abandoned = stats.total - stats.done - stats.failed

    def _check_still_alive(self, error: BaseException) -> None:
        if not self.pipeline.client.health().ok:
            self._stop_fatal(f"stopped: the prompt server stopped answering ({DEAD_AFTER} articles in a row "
                             f"failed and /health fails): {_one_line(error)}")

    def _stop_fatal(self, message: str) -> None:
        self.fatal_message = message
        self.stop.set()
        print(f"batch: {message}", file=sys.stderr)

    def _failure_record(self, outcome: Failed) -> dict:
        attempt = self.prior_attempts.get(outcome.article.id, 0) + 1
        return {"id": outcome.article.id, "stage": outcome.stage,
                "error": type(outcome.error).__name__, "reason": _one_line(outcome.error),
                "attempt": attempt, "line": outcome.article.line,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    # ------------------------------------------------------------------ workers

    def _prompt_worker(self, work: queue.Queue) -> None:
        while not self.stop.is_set():
            try:
                article = work.get_nowait()
            except queue.Empty:
                return
            try:
                outcome = self._make_prompt(article)
            except Exception as exc:  # a bug tripped by one article must not silently lose it
                outcome = Failed(article, "prompt", exc)
            if isinstance(outcome, Composed):
                self.pictures.put(outcome)
            else:
                self.results.put(outcome)

    def _make_prompt(self, article):
        """Retries (with backoff, cancelled by Ctrl-C) happen inside the client's RetryPolicy."""
        started = time.perf_counter()
        relevance: Optional[float] = None
        try:
            if self.best_of > 1:
                relevance, picture_prompt = self.pipeline.best_of(article.news_dict(), self.best_of, seed=self.seed)[0]
            else:
                picture_prompt = self.pipeline.picture_prompt(article.news_dict(), seed=self.seed)
        except EmptyNewsError as exc:
            return Failed(article, "input", exc)
        except AuthenticationError as exc:
            return Failed(article, "prompt", exc, fatal=True)
        except PromptServerError as exc:
            return Failed(article, "prompt", exc)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:  # a broken preset fails this article, not the run
            composed = self.pipeline.compose(picture_prompt, self.preset, available=self.available, base=self.base)
        except Exception as exc:
            return Failed(article, "compose", exc)
        record = {"id": article.id, "picture_prompt": picture_prompt.to_dict(), "preset": composed.preset,
                  "prompt": composed.prompt, "negative_prompt": composed.negative_prompt,
                  "settings": composed.settings, "latency_ms": round(latency_ms, 1),
                  "infotext": composed.infotext}
        if relevance is not None:
            record["relevance"] = round(relevance, 4)  # of the best of --best-of samples
        if composed.warnings:
            record["warnings"] = list(composed.warnings)
        if self.webui is None:
            return Done(article, record, latency_ms)
        payload = dict(composed.txt2img_payload())
        if self.seed is not None:
            payload["seed"] = self.seed
        return Composed(article, record, latency_ms, payload)

    def _picture_worker(self, prompt_workers) -> None:
        """One picture at a time: the WebUI has a single queue."""
        webui = self.webui
        assert webui is not None, "started only with --webui"
        while not self.stop.is_set():
            try:
                item: Composed = self.pictures.get(timeout=0.2)
            except queue.Empty:
                if not any(t.is_alive() for t in prompt_workers) and self.pictures.empty():
                    return
                continue
            try:
                picture = webui.txt2img(item.payload)
                seed = picture.seed if picture.seed is not None else item.payload.get("seed")
                sidecar = {"id": item.article.id, "article": item.article.news_dict(),
                           "picture_prompt": item.record["picture_prompt"], "preset": item.record["preset"],
                           "prompt": item.record["prompt"], "negative_prompt": item.record["negative_prompt"],
                           "seed": seed, "info": picture.info}
                save_picture(self.images_dir, item.article.id, picture, sidecar)
            except Exception as exc:  # WebUIError, a full disk, ...: this article fails, the run goes on
                self.results.put(Failed(item.article, "webui", exc))
                continue
            record = dict(item.record, seed=seed, image=f"images/{safe_stem(item.article.id)}.png")
            if picture.infotext:
                record["infotext"] = picture.infotext
            self.results.put(Done(item.article, record, item.latency_ms))

    # ------------------------------------------------------------------ signals

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None  # run() called from a thread (tests): no signals to handle
        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous) -> None:
        for signum, handler in (previous or {}).items():
            signal.signal(signum, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.signal_code is None:
            self.signal_code = signum
            self.stop.set()
            print(f"\nbatch: {signal.Signals(signum).name}: no new articles; finishing the ones in "
                  "flight (press Ctrl-C again to abandon them)", file=sys.stderr)
        else:
            self.abandon.set()

    # ------------------------------------------------------------------ summary

    def _print_summary(self, stats: Stats) -> None:
        elapsed = max(time.monotonic() - stats.started, 1e-9)
        p50, p95 = percentile(stats.latencies, 50), percentile(stats.latencies, 95)
        lines = [f"batch: {stats.done} done, {self.skipped} skipped (done before), {stats.failed} failed"
                 + (f", {stats.abandoned} not started or abandoned" if stats.abandoned else "")
                 + (f", {len(self.bad_rows)} bad input rows" if self.bad_rows else "")
                 + f" in {elapsed:.1f} s"
                 + (f": {stats.done / elapsed:.2f} articles/s" if stats.done else "")
                 + (f", latency p50 {p50:.0f} ms, p95 {p95:.0f} ms" if stats.latencies else ""),
                 f"  prompts: {self.prompts_path}"]
        if self.failed_path.exists():
            lines.append(f"  failed:  {self.failed_path} (rerun the same command to retry them)")
        if self.bad_rows:
            lines.append(f"  bad rows: {self.bad_rows_path} (fix them in the input file, then rerun)")
        if self.webui is not None:
            lines.append(f"  images:  {self.images_dir}")
        if self.fatal_message:
            lines.append("  fix the cause above, then rerun the same command to continue")
        elif stats.abandoned:
            lines.append("  rerun the same command to continue where this run stopped")
        print("\n".join(lines), flush=True)


# ------------------------------------------------------------------ start-up checks

def _read_input(source: str) -> Tuple[List[Article], List[BadRow]]:
    try:
        articles, bad_rows = read_articles(source)
    except (InputError, OSError) as exc:
        raise StartError(str(exc)) from None
    for row in bad_rows:
        print(f"batch: skipped {source}:{row}", file=sys.stderr)
    return articles, bad_rows


def _webui_base(webui: WebUIClient) -> Optional[str]:
    """The loaded checkpoint's family, said once on stderr (and how to set it when unknown)."""
    base, how = webui.model_base()
    if base is None:
        print(f"batch: the WebUI's model family is unknown ({how}); presets made for "
              f"{label(DEFAULT_BASE)} are picked: pass --base {'/'.join(BASE_CODES)} to choose", file=sys.stderr)
    else:
        print(f"batch: the WebUI has a {label(base)} model loaded (from {how}); presets made for it are picked",
              file=sys.stderr)
    return base


def _preset_store(args: argparse.Namespace) -> PresetStore:
    """The store, with --preset or --family known to exist: a typo stops the run, not every article."""
    store = PresetStore(args.preset_dir)
    for error in store.errors:
        print(f"batch: preset file ignored: {error}", file=sys.stderr)
    try:
        if args.preset:
            store.get(args.preset)
        elif args.family and args.family not in store.families():
            raise PresetNotFound(args.family, store.families(), "preset family")
    except KeyError as exc:
        raise StartError(_one_line(exc)) from None
    return store


def _claim_output(out: Path) -> OutputLock:
    try:
        out.mkdir(parents=True, exist_ok=True)
        return OutputLock(out).acquire()
    except OutputLocked as exc:
        raise StartError(str(exc)) from None
    except OSError as exc:
        raise StartError(f"cannot use the output folder {str(out)!r}: {exc.strerror or exc}") from None


def _health(client: PromptClient) -> None:
    info = client.health()
    if not info.ok:
        raise info.error or StartError(f"prompt server at {info.url} is not ready")


def _transient(error: BaseException) -> bool:
    # A busy server answers /health late (a timeout); one restarting refuses or drops connections.
    if isinstance(error, WebUIError):
        return error.transient
    return isinstance(error, ServerTimeout) or (isinstance(error, PromptServerError) and error.retryable)


def _probe(check: Callable[[], None], transient: Callable[[BaseException], bool], retry: RetryPolicy) -> None:
    """Refuse to start against a server that is not there, instead of failing every article;
    a transient failure is asked again with the client's backoff before giving up."""
    attempt = 0
    while True:
        try:
            return check()
        except (PromptServerError, WebUIError, StartError) as exc:
            if not transient(exc) or attempt >= PROBE_RETRIES or retry.cancel.wait(retry.delay(attempt)):
                raise StartError(_one_line(exc)) from None
        attempt += 1


def _one_line(error: BaseException) -> str:
    # A plain KeyError's str() is the repr of its key; subclasses with their own __str__ say more.
    plain_key_error = type(error).__str__ is KeyError.__str__ and error.args
    text = str(error.args[0]) if plain_key_error else str(error)
    return " ".join(text.split()) or type(error).__name__
