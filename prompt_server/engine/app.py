"""SGLang's OpenAI-compatible HTTP subset as a FastAPI app over the continuous-batching scheduler.

GET /health, GET /v1/models, POST /v1/chat/completions (SGLang's top-level
`regex`, OpenAI's `response_format`, SGLang's `ignore_eos` / `min_tokens`,
`stream: true` as server-sent events), GET /metrics (Prometheus) and
POST /unload (free the model's memory now; the next request reloads it).
Parsing, tokenising and grammar compilation run in worker threads (bad
input -> 400 at once, the event loop stays free); decoding runs in the
scheduler thread, whose callbacks are handed to the event loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any, Dict, List, Optional, Set

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from .constraint import GrammarError
from .generator import GenerationError, GenerationRequest, GenerationResult, Sequence
from .guards import read_body
from .metrics import CONTENT_TYPE, EngineMetrics
from .protocol import ChatCompletionRequest, RequestError, parse_request
from .scheduler import QueueFull, Scheduler

ENGINE_NAME = "newspicgen-local"
DEFAULT_MAX_TOKENS = 1024


class EngineService:
    """What the HTTP layer needs: the scheduler, limits and the names to report."""

    def __init__(self, scheduler: Scheduler, *, served_model_name: str, api_key: Optional[str] = None,
                 max_body_bytes: int = 1 << 20, body_timeout: float = 10.0):
        self.scheduler = scheduler
        self.generator = scheduler.generator
        self.served_model_name = served_model_name
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.metrics = EngineMetrics(scheduler)

    def models(self) -> Dict[str, Any]:
        loaded = self.generator.loaded
        return {"object": "list", "data": [{
            "id": self.served_model_name, "object": "model", "created": int(time.time()),
            "owned_by": ENGINE_NAME, "root": loaded.path, "max_model_len": loaded.context_length}]}

    def prepare(self, request: ChatCompletionRequest) -> List[GenerationRequest]:
        """Tokenise, check the context, compile the grammar (worker thread); RequestError if bad."""
        loaded = self.generator.loaded
        chat = [{"role": m.role, "content": m.text()} for m in request.messages]
        with self.generator.tokenizer_lock:
            text = loaded.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            prompt_ids = loaded.tokenizer(text, add_special_tokens=False)["input_ids"]
        max_tokens = request.requested_max_tokens(DEFAULT_MAX_TOKENS)
        context = loaded.context_length
        if len(prompt_ids) + max_tokens > context:
            raise RequestError(
                f"Requested token count exceeds the model's maximum context length of {context} tokens. "
                f"You requested a total of {len(prompt_ids) + max_tokens} tokens: {len(prompt_ids)} tokens "
                f"from the input messages and {max_tokens} tokens for the completion. "
                f"Please reduce the number of tokens in the input messages or the completion to fit "
                f"within the limit.")
        grammar = None
        if request.regex is not None or request.json_schema() is not None:
            try:
                grammar = self.generator.compile(regex=request.regex, json_schema=request.json_schema())
            except GrammarError as exc:
                raise RequestError(str(exc)) from None
        seed = request.seed
        return [GenerationRequest(
            prompt_ids=prompt_ids, max_tokens=max_tokens, temperature=request.temperature, top_p=request.top_p,
            seed=None if seed is None else _wrap_seed(seed + i), grammar=grammar,
            ignore_eos=request.ignore_eos, min_tokens=request.min_tokens) for i in range(request.n)]


def _wrap_seed(seed: int) -> int:
    """seed + i for n > 1 choices, kept within torch's 64-bit seed range."""
    return seed if seed < 2 ** 64 else seed - 2 ** 64


class Stream:
    """Bridges one sequence's scheduler-thread callbacks to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int):
        self.loop, self.index = loop, index
        self.events: asyncio.Queue[str] = asyncio.Queue()
        self.seq: Optional[Sequence] = None

    def on_token(self, seq: Sequence) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, "token")

    def on_finish(self, seq: Sequence) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, "finish")


def error_response(error: RequestError) -> JSONResponse:
    return JSONResponse(error.payload(), status_code=error.status)


def create_app(service: EngineService) -> FastAPI:
    app = FastAPI(title="NewsPicGen embedded engine", openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, exc: RequestError):
        return error_response(exc)

    @app.exception_handler(404)
    async def _not_found(request: Request, exc):
        return error_response(RequestError(f"no route {request.method} {request.url.path}", 404, "NotFoundError"))

    @app.exception_handler(405)
    async def _wrong_method(request: Request, exc):
        return error_response(RequestError(f"{request.method} is not allowed on {request.url.path}", 405,
                                           "MethodNotAllowedError"))

    @app.get("/health")
    async def health():  # answers while the model is unloaded too: the server is there
        return {"status": "ok", "model_loaded": service.generator.loaded.is_loaded}

    @app.get("/metrics")
    async def metrics():
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/unload")
    async def unload():
        """Free the model's memory once the requests in flight are done; the next request reloads it."""
        await run_in_threadpool(service.scheduler.unload)
        return {"status": "ok", "model_loaded": service.generator.loaded.is_loaded}

    @app.get("/v1/models")
    async def models():
        return service.models()

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(f"Content-Type must be application/json, got {content_type or 'none'!r}",
                               415, "UnsupportedMediaTypeError")
        try:
            body = await read_body(request, limit=service.max_body_bytes, timeout=service.body_timeout)
            parsed = await run_in_threadpool(parse_request, body)
            generation = await run_in_threadpool(service.prepare, parsed)
        except RequestError:
            service.metrics.request_done("rejected")
            raise
        loop = asyncio.get_running_loop()
        streams = [Stream(loop, i) for i in range(len(generation))]
        try:
            for stream, gen in zip(streams, generation, strict=False):
                stream.seq = service.scheduler.submit(gen, on_token=stream.on_token if parsed.stream else None,
                                                      on_finish=stream.on_finish)
        except (QueueFull, GenerationError) as exc:
            _cancel(streams)
            service.metrics.request_done("rejected")
            raise RequestError(str(exc), 503, "ServiceUnavailableError") from None
        model = parsed.model or service.served_model_name
        if parsed.stream:
            return StreamingResponse(_sse(service, streams, model, parsed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return await _complete(service, request, streams, model)

    return app


def _record(service: EngineService, streams: List[Stream]) -> None:
    """One outcome per request (error, else the first choice's finish reason) and each choice's TTFT."""
    seqs = [s.seq for s in streams if s.seq is not None]
    for seq in seqs:
        service.metrics.sequence_done(seq)
    if any(seq.error is not None for seq in seqs):
        status = "error"
    elif seqs and all(seq.result is not None for seq in seqs):
        status = next((seq.result.finish_reason for seq in seqs
                       if seq.result is not None and seq.result.finish_reason != "stop"), "stop")
    else:
        status = "abort"
    service.metrics.request_done(status)


def _cancel(streams: List[Stream]) -> None:
    for stream in streams:
        if stream.seq is not None:
            Scheduler.cancel(stream.seq)


async def _wait_finished(stream: Stream) -> None:
    while await stream.events.get() != "finish":
        pass


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so receive() waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _complete(service: EngineService, request: Request, streams: List[Stream], model: str) -> Response:
    done = asyncio.gather(*(_wait_finished(s) for s in streams))
    gone = asyncio.ensure_future(_client_gone(request))
    either: Set[asyncio.Future[Any]] = {done, gone}
    try:
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not done.done():  # nobody to answer: free the batch slots
        done.cancel()
        _cancel(streams)
        with contextlib.suppress(asyncio.CancelledError):
            await done  # retrieved, so asyncio logs nothing
        service.metrics.request_done("abort")
        return Response(status_code=499)
    _record(service, streams)
    results: List[GenerationResult] = []
    for stream in streams:
        seq = stream.seq
        assert seq is not None  # every stream was submitted before the request got here
        if seq.error is not None:
            raise RequestError(f"generation failed: {seq.error}", 500, "InternalServerError")
        assert seq.result is not None  # finished without an error: Generator.finish set the result
        results.append(seq.result)
    prompt_tokens = results[0].prompt_tokens
    completion = sum(r.completion_tokens for r in results)
    return JSONResponse({
        "id": uuid.uuid4().hex, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": r.text},
                     "logprobs": None, "finish_reason": r.finish_reason} for i, r in enumerate(results)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                  "total_tokens": prompt_tokens + completion},
    })


def _sse_line(payload: Dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _sse(service: EngineService, streams: List[Stream], model: str, parsed: ChatCompletionRequest):
    """OpenAI / SGLang chat.completion.chunk events, one choice at a time, then `data: [DONE]`."""
    rid, created = uuid.uuid4().hex, int(time.time())
    generator = service.generator

    def chunk(index: int, delta: Dict[str, Any], finish: Optional[str] = None) -> str:
        return _sse_line({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                          "choices": [{"index": index, "delta": delta, "logprobs": None,
                                       "finish_reason": finish}]})

    try:
        for stream in streams:
            yield chunk(stream.index, {"role": "assistant", "content": ""})
            sent = ""
            while True:
                event = await stream.events.get()
                seq = stream.seq
                assert seq is not None  # submitted before the response started
                if event == "finish" and seq.error is not None:
                    yield _sse_line(RequestError(f"generation failed: {seq.error}", 500,
                                                 "InternalServerError").payload())
                    break
                text = await run_in_threadpool(generator.text_of, list(seq.tokens), seq.request.ignore_eos)
                # hold back a partial UTF-8 character until its next byte arrives
                complete = event == "finish" or not text.endswith("\ufffd")
                if text.startswith(sent) and len(text) > len(sent) and complete:
                    yield chunk(stream.index, {"content": text[len(sent):]})
                    sent = text
                if event == "finish":
                    assert seq.result is not None  # finished without an error: Generator.finish set the result
                    yield chunk(stream.index, {}, seq.result.finish_reason)
                    break
        if parsed.stream_options is not None and parsed.stream_options.include_usage:
            results = [s.seq.result for s in streams if s.seq is not None and s.seq.result is not None]
            prompt = results[0].prompt_tokens if results else 0
            completion = sum(r.completion_tokens for r in results)
            yield _sse_line({"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                             "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                                      "total_tokens": prompt + completion}})
        yield "data: [DONE]\n\n"
    finally:  # the client went away (the task is cancelled) or all is sent: nothing left to decode
        _cancel(streams)
        _record(service, streams)
