"""The /newspicgen/v1/server routes: the server panel's actions for scripts.

    GET  /newspicgen/v1/server         state, URL, engine, model, progress, log tail, found servers
    POST /newspicgen/v1/server/setup   {"model": "...", "keep_alive": "5m"}: set up and start (joins one running)
    POST /newspicgen/v1/server/start   start the set-up server (joins a start running)
    POST /newspicgen/v1/server/stop    stop it

Setup, start and stop answer 403 when the WebUI listens beyond this machine
without --enable-insecure-extension-access (server_access), 409 when the state
does not allow them (start before setup).
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from pydantic import BaseModel, Field

from prompt_server.setup.manager import Refused

from .server_control import Forbidden, ServerControl

PREFIX = "/newspicgen/v1/server"
TAGS = ["NewsPicGen"]


class ServerSetupRequest(BaseModel):
    model: Optional[str] = Field(None, description="Hugging Face id, modelscope:ID, or a folder on the WebUI's "
                                                   "machine; empty: the one set up before, else NewsPicGen")
    keep_alive: Optional[str] = Field(None, description="free the model's memory after this idle time "
                                                        "(5m, 30s; 0: after every request; -1: never)")


def mount_server_routes(app: Any, get_control: Callable[[], ServerControl],
                        dependencies: Optional[list] = None) -> None:
    from fastapi import HTTPException

    def guarded(action: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        try:
            return action()
        except Forbidden as exc:
            raise HTTPException(status_code=403, detail=str(exc)) from None
        except Refused as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None

    def status(probe: bool = True) -> Dict[str, Any]:
        return get_control().status(probe=probe)

    def setup(req: ServerSetupRequest) -> Dict[str, Any]:
        return guarded(lambda: get_control().setup(req.model, req.keep_alive))

    def start() -> Dict[str, Any]:
        return guarded(lambda: get_control().start())

    def stop() -> Dict[str, Any]:
        return guarded(lambda: get_control().stop())

    common: Dict[str, Any] = {"tags": TAGS, "dependencies": dependencies}
    app.add_api_route(PREFIX, status, methods=["GET"], summary="The prompt server's state and the servers found "
                                                               "on this machine (probe=false: without probing)",
                      **common)
    app.add_api_route(f"{PREFIX}/setup", setup, methods=["POST"],
                      summary="Set up the prompt server (venv, torch, model) and start it", **common)
    app.add_api_route(f"{PREFIX}/start", start, methods=["POST"], summary="Start the set-up prompt server", **common)
    app.add_api_route(f"{PREFIX}/stop", stop, methods=["POST"], summary="Stop the prompt server", **common)
