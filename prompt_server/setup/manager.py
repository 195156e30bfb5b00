"""One prompt server set up and owned by this project: the steps, the state machine, the process.

The WebUI tab, the /newspicgen/v1/server routes and `python -m prompt_server.setup`
all drive a ServerManager on a folder (the WebUI's is <data dir>/newspicgen/server):

    setup(model)  venv → packages (a torch that fits + the server extra) → model → start
    start() / stop() / restart()
    status()      state, URL, progress, log tail, the error with its fix

Long steps run in one worker thread; a second setup() or start() while it runs
joins it (returns the running one's status) instead of starting another. The
server is started through prompt_server.setup.owned with a pipe on its stdin: it
stops when the process that started it ends, however it ends (the WebUI's Ctrl-C
is os._exit, which runs no atexit handler). A server recorded in state.json that
is still answering (a WebUI that crashed mid-start, a `start` from the command
line) is found and reused, never started twice.
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from prompt_server.defaults import DEFAULT_MODEL, DEFAULT_PORT, ENV_TORCH_INDEX, SERVED_MODEL_NAME
from prompt_server.setup.download import DownloadError, download_model
from prompt_server.setup.processes import (
    pid_alive,
    popen_options,
    serve_command,
    stop_process,
    venv_python,
)
from prompt_server.setup.progress import Progress
from prompt_server.setup.requirements import server_requirements
from prompt_server.setup.state import SetupState, StateFile, tail
from prompt_server.setup.torch_choice import TorchChoice, WebUITorch, choose_torch, gpu_visible, installed_torch

REPO_ROOT = Path(__file__).resolve().parents[2]
MODELSCOPE_PREFIX = "modelscope:"
MIN_PYTHON = (3, 10)
START_TIMEOUT_S = 900.0  # loading 3 GB of weights on a slow disk and CPU
RESUME = "press Set up again: it resumes where it stopped"


class SetupError(RuntimeError):
    """A step failed: which step, what happened, and what to do about it."""

    def __init__(self, step: str, cause: str, fix: str):
        super().__init__(f"{step}: {cause}; {fix}")
        self.step, self.cause, self.fix = step, cause, fix

    def to_dict(self) -> Dict[str, str]:
        return {"step": self.step, "cause": self.cause, "fix": self.fix}


class Refused(RuntimeError):
    """An action that cannot be done in this state (start before setup, ...); the message says why."""


@dataclass(frozen=True)
class Machine:
    """What the torch choice reads; the WebUI's own interpreter by default."""
    system: str
    machine: str
    torch: WebUITorch
    gpu: bool

    @classmethod
    def here(cls) -> Machine:
        return cls(platform.system(), platform.machine(), installed_torch(), gpu_visible())


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def answers_as_ours(url: str, timeout: float = 2.0) -> bool:
    """The server at `url` is healthy and is this project's engine (it names itself in /v1/models)."""
    try:
        with urllib.request.urlopen(url + "/health", timeout=timeout) as response:  # noqa: S310 - loopback
            if response.status != 200:
                return False
        with urllib.request.urlopen(url + "/v1/models", timeout=timeout) as response:  # noqa: S310
            data = json.loads(response.read().decode("utf-8")).get("data") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any(entry.get("id") == SERVED_MODEL_NAME for entry in data if isinstance(entry, dict))


def is_local_folder(model: str) -> bool:
    return os.path.isdir(os.path.expanduser(model))


def looks_like_path(model: str) -> bool:
    """Hub ids are `owner/name`; anything absolute, relative or with more slashes is a folder."""
    return (model.startswith(("/", "./", "../", "~", "\\")) or model.count("/") > 1 or "\\" in model
            or (len(model) > 1 and model[1] == ":"))  # C:\...


def child_environment(environ: Mapping[str, str], repo_root: Path) -> Dict[str, str]:
    """The server's environment: the user's, minus the WebUI's venv and paths, plus this repository."""
    env = {k: v for k, v in environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(repo_root), PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")  # the model is a local folder by then
    return env


class ServerManager:
    def __init__(self, folder: Path, *, base_python: str = sys.executable, repo_root: Path = REPO_ROOT,
                 environ: Optional[Mapping[str, str]] = None, machine: Optional[Callable[[], Machine]] = None,
                 on_running: Optional[Callable[[str], None]] = None, start_timeout: float = START_TIMEOUT_S,
                 system: Optional[str] = None, preferred_port: int = DEFAULT_PORT):
        self.folder = Path(folder)
        self.files = StateFile(self.folder)
        self.base_python = base_python
        self.repo_root = Path(repo_root)
        self.environ = os.environ if environ is None else environ
        self.machine = machine or Machine.here
        self.on_running = on_running
        self.start_timeout = start_timeout
        self.system = system or platform.system()
        self.preferred_port = preferred_port
        self._lock = threading.RLock()
        self._worker: Optional[threading.Thread] = None
        self._process: Optional[subprocess.Popen] = None
        self._stopping = False
        self._recover()

    # ---- paths ---------------------------------------------------------------------------
    @property
    def venv(self) -> Path:
        return self.folder / "venv"

    @property
    def python(self) -> Path:
        return venv_python(self.venv, self.system)

    # ---- what is going on ----------------------------------------------------------------
    def busy(self) -> bool:
        """A setup or start is running in this process."""
        return self._worker is not None and self._worker.is_alive()

    def _busy_elsewhere(self, state: SetupState) -> bool:
        return (state.state in ("installing", "starting") and state.owner_pid not in (None, os.getpid())
                and pid_alive(state.owner_pid))

    def status(self) -> Dict[str, Any]:
        with self._lock:
            state = self._reconciled()
        on_server = state.step == "start" or state.state in ("starting", "running", "stopped")
        return {"state": state.state, "step": state.step, "model": state.model, "model_path": state.model_path,
                "engine": state.engine, "url": state.url if state.state == "running" else None,
                "port": state.port, "pid": state.pid if state.state in ("starting", "running") else None,
                "progress": state.progress, "error": state.error, "note": state.note,
                "autostart": state.autostart, "keep_alive": state.keep_alive, "torch": state.torch,
                "busy": self.busy() or self._busy_elsewhere(state), "folder": str(self.folder),
                "log_tail": tail(self.files.server_log if on_server else self.files.setup_log)}

    def _reconciled(self) -> SetupState:
        """state.json, corrected by what is really there (a server that exited, a setup that died)."""
        state = self.files.load()
        if state.state == "running":
            if self._process is not None:
                code = self._process.poll()
                if code is not None and not self._stopping:
                    self._process = None
                    return self.files.update(
                        state="failed", step="start", pid=None, error=SetupError(
                            "start", f"the server exited with code {code}: {self._last_server_line()}",
                            "see the log below; press Start to start it again").to_dict())
            elif not pid_alive(state.pid, self.system):
                return self.files.update(state="stopped", pid=None, note="the server is no longer running")
        if state.state in ("installing", "starting") and not self.busy() and not self._busy_elsewhere(state):
            return self._interrupted(state)
        return state

    def _interrupted(self, state: SetupState) -> SetupState:
        if state.pid and pid_alive(state.pid, self.system):  # a server half started by a process now gone
            stop_process(state.pid, system=self.system)
        step = state.step or "venv"
        return self.files.update(state="failed", pid=None, owner_pid=None, progress=None, error=SetupError(
            step, f"the {'start' if step == 'start' else 'setup'} was interrupted "
                  "(the process running it ended)", RESUME).to_dict())

    def _recover(self) -> None:
        """On start-up: reuse a server recorded as running that still answers; stop one that does not."""
        with self._lock:
            state = self.files.load()
            if state.state in ("running", "starting") and state.pid and pid_alive(state.pid, self.system):
                url = f"http://127.0.0.1:{state.port}"
                if answers_as_ours(url):
                    self.files.update(state="running", step=None, url=url, owner_pid=None, progress=None,
                                      note=f"found the server left running (process {state.pid}): reusing it")
                    self.files.log(f"found the server at {url} (process {state.pid}) still running: reusing it")
                    return
                if not self._busy_elsewhere(state):
                    stop_process(state.pid, system=self.system)
                    self.files.update(state="stopped", pid=None, owner_pid=None, progress=None,
                                      note=f"stopped a server left by an earlier run (process {state.pid}) "
                                           "that did not answer")
                    return
            self._reconciled()

    # ---- actions -------------------------------------------------------------------------
    def setup(self, model: Optional[str] = None, *, keep_alive: Optional[str] = None,
              start: bool = True) -> Dict[str, Any]:
        """Set up (and start) the server for `model`; joins a setup already running."""
        with self._lock:
            state = self._reconciled()
            if self.busy() or self._busy_elsewhere(state):
                return {**self.status(), "joined": True}
            model = (model or state.model or DEFAULT_MODEL).strip()
            keep_alive = (keep_alive.strip() or None) if keep_alive is not None else state.keep_alive
            done = dict(state.done)
            if model != state.model:
                done.pop("model", None)
            if state.state == "running" and model == state.model and keep_alive == state.keep_alive:
                return self.status()
            self.files.update(state="installing", step="venv", model=model, done=done, error=None, note=None,
                              keep_alive=keep_alive,
                              owner_pid=os.getpid(), progress=Progress("venv", "starting the setup").to_dict())
            self.files.log(f"--- setup of {model} ({time.strftime('%Y-%m-%d %H:%M:%S')})")
            self._run_in_worker(lambda: self._setup_steps(start, restart=state.state == "running"))
            return self.status()

    def start(self) -> Dict[str, Any]:
        """Start the set-up server; joins a start already running; nothing when it runs."""
        with self._lock:
            state = self._reconciled()
            if self.busy() or self._busy_elsewhere(state):
                return {**self.status(), "joined": True}
            if state.state == "running":
                return self.status()
            if not self._installed(state):
                raise Refused("the server is not set up yet: press Set up (it installs, downloads and starts)")
            self.files.update(state="starting", step="start", error=None, note=None, owner_pid=os.getpid(),
                              progress=Progress("start", "starting the server").to_dict())
            self._run_in_worker(self._start_step)
            return self.status()

    def stop(self) -> Dict[str, Any]:
        with self._lock:
            state = self._reconciled()
            if state.state == "installing":
                raise Refused("a setup is running; wait for it to finish, then press Stop")
            if state.state in ("starting", "running"):
                self._stop_server(state)
            self._process = None
            if state.state in ("starting", "running"):
                self.files.update(state="stopped", pid=None, owner_pid=None, progress=None, url=None)
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=30)
        return self.status()

    def _stop_server(self, state: SetupState) -> None:
        pid = self._process.pid if self._process is not None else state.pid
        if not pid:
            return
        self._stopping = True
        try:
            stop_process(pid, self._process, self.system)
        finally:
            self._stopping = False
        self._process = None
        self.files.log(f"stopped the server (process {pid})")

    def restart(self) -> Dict[str, Any]:
        self.stop()
        return self.start()

    def set_options(self, *, autostart: Optional[bool] = None, keep_alive: Optional[str] = None) -> Dict[str, Any]:
        changes: Dict[str, Any] = {}
        if autostart is not None:
            changes["autostart"] = bool(autostart)
        if keep_alive is not None:
            changes["keep_alive"] = keep_alive.strip() or None
        if changes:
            self.files.update(**changes)
        return self.status()

    def start_if_wanted(self) -> Optional[Dict[str, Any]]:
        """At WebUI start-up: start the server when "start with the WebUI" is on and it is not running."""
        state = self.files.load()
        if not state.autostart or state.state == "running" or not self._installed(state):
            return None
        return self.start()

    def wait(self, timeout: Optional[float] = None) -> Dict[str, Any]:
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return self.status()

    def shutdown(self) -> None:
        """The WebUI is exiting: stop the server this process started."""
        if self._process is not None and self._process.poll() is None:
            self.stop()

    # ---- the steps -----------------------------------------------------------------------
    def _installed(self, state: SetupState) -> bool:
        return ("packages" in state.done and bool(state.model_path) and Path(state.model_path or "").is_dir()
                and self.python.exists())

    def _run_in_worker(self, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except SetupError as exc:
                self._fail(exc)
            except Exception as exc:  # a bug: still name the step, and keep what is done
                step = self.files.load().step or "venv"
                self._fail(SetupError(step, f"unexpected error ({type(exc).__name__}: {exc})",
                                      f"see {self.files.setup_log}; {RESUME}"))

        self._worker = threading.Thread(target=run, name="newspicgen-server-setup", daemon=True)
        self._worker.start()

    def _fail(self, error: SetupError) -> None:
        if self._stopping:
            return
        self.files.log(f"FAILED at {error.step}: {error.cause}; {error.fix}")
        self.files.update(state="failed", step=error.step, error=error.to_dict(), owner_pid=None, progress=None)

    def _report(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - getattr(self, "_reported", 0.0) >= 0.5 or progress.done == progress.total:
            self._reported = now
            self.files.update(progress=progress.to_dict())

    def _setup_steps(self, start: bool, restart: bool = False) -> None:
        self._venv_step()
        self._packages_step()
        self._model_step()
        self.files.update(state="installed", step=None, owner_pid=None, progress=None)
        self.files.log("setup finished")
        if start:
            if restart:  # the server of the model set up before
                self._stop_server(self.files.load())
            self.files.update(state="starting", step="start", owner_pid=os.getpid())
            self._start_step()

    def _venv_step(self) -> None:
        self.files.update(step="venv", progress=Progress("venv", f"creating {self.venv}").to_dict())
        if self._python_works():
            self.files.log(f"venv: {self.venv} is there")
        else:
            self._run_logged("venv", [self.base_python, "-m", "venv", str(self.venv)],
                             f"could not create {self.venv}",
                             "install Python 3.10 or newer with its venv module (Debian/Ubuntu: apt install "
                             "python3-venv; Windows: python.org's installer), then press Set up again")
            if not self._python_works():
                raise SetupError("venv", f"{self.python} does not run Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]}+",
                                 "set up with Python 3.10 or newer")
        self._mark_done("venv", str(self.python))

    def _python_works(self) -> bool:
        if not self.python.exists():
            return False
        try:
            result = subprocess.run([str(self.python), "-c", "import sys; print(sys.version_info >= (3, 10))"],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return result.returncode == 0 and result.stdout.strip() == "True"

    def packages_wanted(self) -> Tuple[TorchChoice, List[str], str]:
        """(the torch choice, the other requirements, their fingerprint: what `done` records)."""
        machine = self.machine()
        torch = choose_torch(machine.system, machine.machine, machine.torch, machine.gpu)
        if ENV_TORCH_INDEX in self.environ:  # a mirror of PyTorch's index, or "" for pip's own configuration
            mirror = self.environ[ENV_TORCH_INDEX].strip() or None
            torch = TorchChoice(torch.requirement, mirror, torch.kind,
                                f"{torch.reason}; index from {ENV_TORCH_INDEX}: {mirror or 'pip configuration'}")
        requirements = server_requirements(self.repo_root / "pyproject.toml")
        return torch, requirements, json.dumps({"torch": torch.pip_args(), "requirements": requirements})

    def _packages_step(self) -> None:
        torch, requirements, fingerprint = self.packages_wanted()
        if self.files.load().done.get("packages") == fingerprint:
            self.files.log("packages: installed before")
            return
        self.files.update(step="packages", torch=f"{' '.join(torch.pip_args())} ({torch.reason})")
        self.files.log(f"torch: {' '.join(torch.pip_args())} ({torch.reason})")
        self._pip(torch, [*torch.pip_args()], "torch")
        self._pip(torch, requirements, "the server's packages")
        self._mark_done("packages", fingerprint)

    def _pip(self, torch: TorchChoice, args: List[str], what: str) -> None:
        index = "download.pytorch.org" if torch.index_url else "PyPI"
        self._run_logged("packages", [str(self.python), "-m", "pip", "install", "--disable-pip-version-check",
                                      *args], f"pip could not install {what}",
                         f"check the network or proxy (pip needs PyPI{' and ' + index if index != 'PyPI' else ''}; "
                         f"HTTPS_PROXY / PIP_INDEX_URL are passed on), then {RESUME}",
                         label=f"installing {what}")

    def _model_step(self) -> None:
        state = self.files.load()
        model = state.model or DEFAULT_MODEL
        if state.done.get("model") == model and state.model_path and Path(state.model_path).is_dir():
            self.files.log(f"model: {state.model_path} is there")
            return
        self.files.update(step="model", progress=Progress("model", f"looking for {model}").to_dict())
        note = None
        if is_local_folder(model):
            path = Path(os.path.expanduser(model)).resolve()
            if not (path / "config.json").is_file():
                raise SetupError("model", f"the folder {path} has no config.json",
                                 "give the folder that holds the model's files (config.json, *.safetensors, "
                                 "tokenizer.json)")
        elif looks_like_path(model) and not model.startswith(MODELSCOPE_PREFIX):
            raise SetupError("model", f"the model folder {model} does not exist",
                             f"check the path, or give a Hugging Face id such as {DEFAULT_MODEL} "
                             f"or modelscope:{DEFAULT_MODEL}")
        else:
            source = "modelscope" if model.startswith(MODELSCOPE_PREFIX) else "auto"
            repo = model[len(MODELSCOPE_PREFIX):] if source == "modelscope" else model
            try:
                got = download_model(repo, self.folder / "models", source=source, environ=self.environ,
                                     report=self._report, log=self.files.log)
            except DownloadError as exc:
                raise SetupError("model", exc.cause, exc.fix) from None
            path, note = got.folder, got.note
        self.files.update(model_path=str(path), note=note)
        self._mark_done("model", model)

    def _mark_done(self, step: str, fingerprint: str) -> None:
        state = self.files.load()
        self.files.update(done={**state.done, step: fingerprint})

    def _run_logged(self, step: str, command: List[str], cause: str, fix: str, label: str = "") -> None:
        """Run a command, its output line by line into setup.log and the progress label."""
        self.files.log("$ " + " ".join(command))
        env = {k: v for k, v in self.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, text=True, errors="replace")
        except OSError as exc:
            raise SetupError(step, f"{cause}: {exc.strerror or exc}", fix) from None
        last: List[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            line = line.rstrip()
            if not line:
                continue
            self.files.log(line)
            last = (last + [line])[-20:]
            self._report(Progress(step, f"{label}: {line[:160]}" if label else line[:160]))
        code = process.wait()
        if code != 0:
            errors = [x for x in last if x.lstrip().upper().startswith("ERROR")] or last or [f"exit code {code}"]
            raise SetupError(step, f"{cause}: {errors[-1].strip()}", fix)

    def _last_server_line(self) -> str:
        lines = [line for line in tail(self.files.server_log, 5) if not line.startswith("--- ")]
        return lines[-1].strip() if lines else "no output yet"

    def _start_step(self) -> None:
        state = self.files.load()
        if not state.model_path:
            raise SetupError("start", "no model is set up", "press Set up")
        port = state.port if state.port and port_free(state.port) else (
            self.preferred_port if port_free(self.preferred_port) else free_port())
        url = f"http://127.0.0.1:{port}"
        command = serve_command(self.python, state.model_path, port, keep_alive=state.keep_alive, owned=True)
        with self.files.server_log.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(command)}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(command, cwd=self.repo_root, stdin=subprocess.PIPE, stdout=log,
                                           stderr=subprocess.STDOUT,
                                           env=child_environment(self.environ, self.repo_root),
                                           **popen_options(self.system))
            except OSError as exc:
                raise SetupError("start", f"could not run {self.python}: {exc.strerror or exc}", RESUME) from None
        with self._lock:
            self._process = process
        self.files.update(state="starting", step="start", pid=process.pid, port=port, url=url,
                          owner_pid=os.getpid())
        began = time.monotonic()
        while True:
            code = process.poll()
            if code is not None:
                if self._stopping or self._process is not process:  # Stop was pressed while it started
                    return
                raise SetupError("start", f"the server exited with code {code}: {self._last_server_line()}",
                                 "see the log below; press Start to try again (Set up if the model is broken)")
            if answers_as_ours(url, timeout=2.0):
                break
            waited = time.monotonic() - began
            if waited > self.start_timeout:
                stop_process(process.pid, process, self.system)
                raise SetupError("start", f"the server did not answer within {self.start_timeout:.0f} s",
                                 "see the log below; press Start to try again")
            self._report(Progress("start", f"loading the model ({waited:.0f} s): {self._last_server_line()[:120]}"))
            time.sleep(0.5)
        if self._stopping or self._process is not process:
            return
        if self.on_running is not None:  # before "running": whoever sees it running finds the WebUI pointed at it
            try:
                self.on_running(url)
            except Exception as exc:  # pointing the WebUI at it is a convenience; the server runs anyway
                self.files.log(f"could not point the WebUI at {url}: {exc}")
        self.files.update(state="running", step=None, progress=None, owner_pid=None, error=None)
        self.files.log(f"the server is running at {url} (process {process.pid})")
