"""Download a model folder from Hugging Face (its HTTP API, HF_ENDPOINT honoured) or ModelScope.

Resumable (each file goes to `<name>.part`, continued with an HTTP Range request),
free disk checked before the first byte, progress as bytes / rate / time left.
When Hugging Face cannot be reached at all, ModelScope is tried, and the log
says so. Stdlib only (urllib): the setup runs before any venv exists.
"""
from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Tuple

from prompt_server.setup.progress import Meter, Progress, size_text

HF_DEFAULT_ENDPOINT = "https://huggingface.co"
MODELSCOPE_DEFAULT_DOMAIN = "www.modelscope.cn"
DISK_MARGIN_BYTES = 200 * 1000 * 1000  # room left over for logs, the venv's caches
CHUNK = 1 << 20
USER_AGENT = "newspicgen-setup/1"


class DownloadError(RuntimeError):
    """The model could not be downloaded: `cause` (what happened) and `fix` (what to do)."""

    def __init__(self, cause: str, fix: str):
        super().__init__(f"{cause}; {fix}")
        self.cause, self.fix = cause, fix


class Unreachable(DownloadError):
    """No answer at all from a source (DNS, refused, timeout): another source may work."""


@dataclass(frozen=True)
class RemoteFile:
    path: str               # inside the model folder, "/"-separated
    size: Optional[int]
    url: str


@dataclass(frozen=True)
class Downloaded:
    folder: Path
    source: str             # "Hugging Face" | "ModelScope"
    note: Optional[str]     # e.g. why ModelScope was used


Report = Callable[[Progress], None]
Log = Callable[[str], None]


def hf_endpoint(environ: Mapping[str, str]) -> str:
    return (environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT).rstrip("/")


def modelscope_endpoint(environ: Mapping[str, str]) -> str:
    """MODELSCOPE_DOMAIN as the modelscope package reads it (a host, or a full URL)."""
    domain = (environ.get("MODELSCOPE_DOMAIN") or MODELSCOPE_DEFAULT_DOMAIN).rstrip("/")
    return domain if "://" in domain else f"https://{domain}"


def _open(url: str, headers: Optional[dict] = None, timeout: float = 30.0):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) URLs we build


def _get_json(url: str, source: str, repo: str, headers: dict, timeout: float):
    try:
        with _open(url, headers, timeout) as response:
            return json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403, 404):
            raise DownloadError(f"{source} has no model {repo!r} that can be read (HTTP {exc.code})",
                                "check the id (owner/name), or give modelscope:ID or a local folder") from None
        raise Unreachable(f"{source} answered HTTP {exc.code} for {url}", "try again later") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise Unreachable(f"{source} ({url.split('/api/')[0]}) is unreachable ({reason})",
                          "check the network or proxy (HTTPS_PROXY), set HF_ENDPOINT to a mirror, "
                          "or give a local folder") from None
    except ValueError:
        raise Unreachable(f"{source} sent something that is not JSON for {url}", "try again later") from None


def hf_files(repo: str, environ: Mapping[str, str], revision: str = "main", timeout: float = 30.0) -> List[RemoteFile]:
    """The files of a Hugging Face model repository (GET /api/models/{repo}/tree/{revision})."""
    endpoint = hf_endpoint(environ)
    quoted = urllib.parse.quote(repo, safe="/")
    entries = _get_json(f"{endpoint}/api/models/{quoted}/tree/{revision}?recursive=true", "Hugging Face", repo,
                        _hf_headers(environ), timeout)
    files = []
    for entry in entries if isinstance(entries, list) else []:
        if entry.get("type") != "file":
            continue
        size = (entry.get("lfs") or {}).get("size", entry.get("size"))
        path = entry["path"]
        files.append(RemoteFile(path, size, f"{endpoint}/{quoted}/resolve/{revision}/"
                                            f"{urllib.parse.quote(path, safe='/')}"))
    return files


def _hf_headers(environ: Mapping[str, str]) -> dict:
    token = environ.get("HF_TOKEN") or environ.get("HUGGING_FACE_HUB_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


def modelscope_files(repo: str, environ: Mapping[str, str], revision: str = "master",
                     timeout: float = 30.0) -> List[RemoteFile]:
    """The files of a ModelScope model (GET /api/v1/models/{repo}/repo/files)."""
    endpoint = modelscope_endpoint(environ)
    quoted = urllib.parse.quote(repo, safe="/")
    answer = _get_json(f"{endpoint}/api/v1/models/{quoted}/repo/files?Revision={revision}&Recursive=true",
                       "ModelScope", repo, {}, timeout)
    entries = ((answer or {}).get("Data") or {}).get("Files") or []
    return [RemoteFile(e["Path"], e.get("Size"),
                       f"{endpoint}/api/v1/models/{quoted}/repo?Revision={revision}&"
                       f"FilePath={urllib.parse.quote(e['Path'], safe='')}")
            for e in entries if e.get("Type", "blob") == "blob"]


def model_folder(root: Path, source: str, repo: str) -> Path:
    return root / ("modelscope" if source == "ModelScope" else "huggingface") / repo.replace("/", "--")


def download_model(repo: str, root: Path, *, source: str = "auto", environ: Optional[Mapping[str, str]] = None,
                   report: Report = lambda p: None, log: Log = lambda line: None,
                   disk_usage: Callable[[Path], Tuple[int, int, int]] = shutil.disk_usage,
                   retries: int = 3, timeout: float = 30.0) -> Downloaded:
    """Download `repo` under `root` (source "auto": Hugging Face, else ModelScope when HF is unreachable)."""
    env = os.environ if environ is None else environ
    note = None
    if source == "modelscope":
        name, files = "ModelScope", modelscope_files(repo, env, timeout=timeout)
    else:
        try:
            name, files = "Hugging Face", hf_files(repo, env, timeout=timeout)
        except Unreachable as exc:
            if source == "huggingface":
                raise
            note = f"{exc.cause}: downloading from ModelScope instead"
            log(note)
            try:
                name, files = "ModelScope", modelscope_files(repo, env, timeout=timeout)
            except Unreachable as second:
                raise Unreachable(f"{exc.cause}, and {second.cause}",
                                  "check the network or proxy (HTTPS_PROXY), set HF_ENDPOINT to a mirror, "
                                  "or download the model yourself and give its folder") from None
    if not any(f.path == "config.json" for f in files):
        raise DownloadError(f"{name}'s {repo!r} is not a transformers model folder (no config.json)",
                            "give the id of a Qwen2-style model such as blacker521/NewsPicGen")
    folder = model_folder(root, name, repo)
    folder.mkdir(parents=True, exist_ok=True)
    _check_disk(folder, files, disk_usage)
    total = sum(f.size or 0 for f in files)
    done = sum(_present(folder, f) for f in files)
    meter = Meter(already=done)
    log(f"downloading {repo} from {name}: {len(files)} files, {size_text(total)} ({size_text(done)} already here)")
    for remote in files:
        if _complete(folder, remote):
            continue
        for attempt in range(retries + 1):
            try:
                done = _fetch(folder, remote, done, total, meter, report, env, timeout)
                break
            except Unreachable as exc:
                log(f"{exc.cause} (attempt {attempt + 1} of {retries + 1})")
                if attempt == retries:
                    raise
                done = sum(_present(folder, f) for f in files)
    log(f"model ready in {folder}")
    return Downloaded(folder, name, note)


def _target(folder: Path, remote: RemoteFile) -> Path:
    target = (folder / remote.path).resolve()
    if folder.resolve() not in target.parents:  # a listing must not write outside the model folder
        raise DownloadError(f"the model listing names a file outside its folder: {remote.path!r}",
                            "report it to the model's owner")
    return target


def _complete(folder: Path, remote: RemoteFile) -> bool:
    target = _target(folder, remote)
    return target.is_file() and (remote.size is None or target.stat().st_size == remote.size)


def _present(folder: Path, remote: RemoteFile) -> int:
    """Bytes of this file already on disk (whole, or in its .part)."""
    target = _target(folder, remote)
    if _complete(folder, remote):
        return target.stat().st_size
    part = target.with_name(target.name + ".part")
    return part.stat().st_size if part.is_file() else 0


def _check_disk(folder: Path, files: List[RemoteFile], disk_usage) -> None:
    needed = sum(max(0, (f.size or 0) - _present(folder, f)) for f in files)
    free = disk_usage(folder)[2]
    if needed + DISK_MARGIN_BYTES > free:
        raise DownloadError(f"not enough free disk for the model: it needs {size_text(needed)} more "
                            f"(+{size_text(DISK_MARGIN_BYTES)} to spare) and {folder} has {size_text(free)} free",
                            "free some space there, or set up in another folder")


def _fetch(folder: Path, remote: RemoteFile, done: int, total: int, meter: Meter, report: Report,
           environ: Mapping[str, str], timeout: float) -> int:
    """Download one file, continuing its .part; returns the new overall byte count."""
    target = _target(folder, remote)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    headers = dict(_hf_headers(environ)) if remote.url.startswith(hf_endpoint(environ)) else {}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = _open(remote.url, headers, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416:  # the .part is not a prefix of this file any more: start it again
            part.unlink()
            raise Unreachable(f"{remote.path} changed on the server", "it is downloaded again") from None
        raise DownloadError(f"downloading {remote.path} failed (HTTP {exc.code})",
                            "press Set up again; it resumes where it stopped") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        raise Unreachable(f"downloading {remote.path} failed ({getattr(exc, 'reason', exc)})",
                          "press Set up again; it resumes where it stopped") from None
    with response:
        resumed = have and response.status == 206
        if have and not resumed:  # the server ignored Range: start the file over
            done -= have
            have = 0
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    have += len(chunk)
                    done += len(chunk)
                    rate, eta = meter.measure(done, total)
                    report(Progress("model", remote.path, done, total, rate, eta))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DownloadError(f"the disk filled up while downloading {remote.path}",
                                    "free some space, then press Set up again; it resumes where it stopped") from None
            raise Unreachable(f"the download of {remote.path} stopped at {size_text(have)} "
                              f"({exc.strerror or exc})", "press Set up again; it resumes where it stopped") from None
        except http.client.HTTPException as exc:
            raise Unreachable(f"the download of {remote.path} stopped at {size_text(have)} "
                              f"({type(exc).__name__})",
                              "press Set up again; it resumes where it stopped") from None
    if remote.size is not None and have != remote.size:
        raise Unreachable(f"the download of {remote.path} ended at {size_text(have)} of {size_text(remote.size)}",
                          "press Set up again; it resumes where it stopped")
    os.replace(part, target)
    return done
