"""A model hub on loopback: serves a model folder the way Hugging Face (HF_ENDPOINT) and
ModelScope (MODELSCOPE_DOMAIN) do, with faults on demand for the download tests.

    GET /api/models/{repo}/tree/main?recursive=true          Hugging Face listing
    GET /{repo}/resolve/main/{path}                           Hugging Face file (Range honoured)
    GET /api/v1/models/{repo}/repo/files?...                  ModelScope listing
    GET /api/v1/models/{repo}/repo?Revision=..&FilePath=..    ModelScope file
"""
from __future__ import annotations

import threading
import time
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional

from tests.support.loopback import LoopbackServer, QuietHandler


class ModelHub(LoopbackServer):
    def __init__(self, repo: str, folder: Path):
        self.repo, self.folder = repo, Path(folder)
        self.requests: List[Dict[str, Optional[str]]] = []  # {"path", "range"} of every file request
        self.cut_after: Optional[int] = None  # drop the connection of a file after this many bytes ...
        self.cuts_left = 0                    # ... this many times ...
        self.cut_path = "model.safetensors"   # ... for this file
        self.delay_s = 0.0                    # before each file answer
        self.lock = threading.Lock()
        super().__init__(self._handler())

    def files(self) -> List[Path]:
        return sorted(p for p in self.folder.rglob("*") if p.is_file())

    def file_requests(self, name: str) -> List[Dict[str, Optional[str]]]:
        return [r for r in self.requests if r["path"] == name]

    def _handler(self):
        hub = self

        class Handler(QuietHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                path = urllib.parse.unquote(url.path)
                listing = [{"type": "file", "path": p.relative_to(hub.folder).as_posix(), "size": p.stat().st_size}
                           for p in hub.files()]
                if path == f"/api/models/{hub.repo}/tree/main":
                    return self.send(200, listing)
                if path == f"/api/v1/models/{hub.repo}/repo/files":
                    return self.send(200, {"Code": 200, "Data": {"Files": [
                        {"Path": e["path"], "Name": e["path"].rsplit("/", 1)[-1], "Size": e["size"], "Type": "blob"}
                        for e in listing]}})
                prefix = f"/{hub.repo}/resolve/main/"
                if path.startswith(prefix):
                    return self.file(path[len(prefix):])
                if path == f"/api/v1/models/{hub.repo}/repo" and "FilePath" in query:
                    return self.file(query["FilePath"][0])
                return self.send(404, {"error": f"no {path}"})

            def file(self, name: str) -> None:
                target = hub.folder / name
                if not target.is_file():
                    return self.send(404, {"error": "no such file"})
                ranged = self.headers.get("Range")
                with hub.lock:
                    hub.requests.append({"path": name, "range": ranged})
                    cut = hub.cut_after if hub.cuts_left > 0 and name == hub.cut_path else None
                    if cut is not None:
                        hub.cuts_left -= 1
                time.sleep(hub.delay_s)
                data = target.read_bytes()
                start = int(ranged.split("=", 1)[1].split("-", 1)[0]) if ranged else 0
                body = data[start:]
                self.send_response(206 if ranged else 200)
                self.send_header("Content-Length", str(len(body)))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                if cut is not None:  # a connection that breaks mid-file
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        return Handler
