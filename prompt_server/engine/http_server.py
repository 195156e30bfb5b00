"""Build the embedded engine (model, generator, scheduler) and serve it with uvicorn.

uvicorn is what SGLang itself serves with: one asyncio event loop holds every
connection (idle ones cost no thread), with a large listen backlog, idle
keep-alive and header timeouts, and a cap on concurrent connections.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Optional

import uvicorn

from .app import EngineService, create_app
from .generator import Generator
from .guards import Guard, HeaderTimeoutH11
from .scheduler import Scheduler


@dataclass
class ServerLimits:
    max_body_bytes: int = 1 << 20        # a long article is ~30 KB of JSON
    body_timeout: float = 10.0           # per read of the body
    header_timeout: float = 10.0         # a request's headers must arrive within this
    keep_alive_timeout: float = 5.0      # idle keep-alive connections are closed after this
    max_connections: int = 2048          # beyond this uvicorn answers 503
    backlog: int = 2048                  # the stdlib server's 5 reset clients under load


def build_service(model: str, *, source: str = "auto", device: str = "auto", dtype: str = "auto",
                  quantize: Optional[str] = None, max_batch_size: int = 8, max_waiting: int = 1024,
                  context_length: Optional[int] = None, served_model_name: str = "newspicgen",
                  api_key: Optional[str] = None, limits: Optional[ServerLimits] = None,
                  keep_alive: Optional[float] = None, prefix_cache_tokens: int = 4096,
                  jump_forward: bool = True) -> EngineService:
    """Start the scheduler thread and load the model in it (the slow part of `serve --engine local`)."""
    from .model_loader import load_model

    limits = limits or ServerLimits()

    def load() -> Generator:
        loaded = load_model(model, source=source, device=device, dtype=dtype, context_length=context_length,
                            quantize=quantize)
        return Generator(loaded, max_batch_size=max_batch_size, jump_forward=jump_forward,
                         prefix_cache_tokens=prefix_cache_tokens)

    scheduler = Scheduler(load, max_waiting=max_waiting, keep_alive=keep_alive)
    return EngineService(scheduler, served_model_name=served_model_name, api_key=api_key,
                         max_body_bytes=limits.max_body_bytes, body_timeout=limits.body_timeout)


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """Bind before serving, so a busy port is reported by us in one line (OSError)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog)


def make_server(service: EngineService, limits: Optional[ServerLimits] = None) -> uvicorn.Server:
    limits = limits or ServerLimits()
    protocol = type("EngineH11", (HeaderTimeoutH11,), {"header_timeout": limits.header_timeout})
    app = Guard(create_app(service), api_key=service.api_key, max_body_bytes=limits.max_body_bytes)
    config = uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning", access_log=False,
                            timeout_keep_alive=int(max(1, limits.keep_alive_timeout)),
                            limit_concurrency=limits.max_connections, backlog=limits.backlog,
                            timeout_graceful_shutdown=5)
    return uvicorn.Server(config)
