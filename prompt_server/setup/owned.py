"""`python -m prompt_server.setup.owned serve ...`: `serve`, ending when its owner ends.

The owner (the WebUI) holds the write end of a pipe on this process's stdin.
When the owner ends, however it ends (its Ctrl-C handler is os._exit, it may
crash or be killed), the pipe closes and this process stops the server as if
Ctrl-C had been pressed. Works the same on Windows, where there is no SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import List, Optional

GRACE_S = 20.0  # for uvicorn to finish the requests in flight


def _watch_owner() -> None:
    try:
        while sys.stdin.buffer.read(1024):
            pass
    except (OSError, ValueError):
        pass
    print("newspicgen server: the process that started it has ended; stopping", file=sys.stderr, flush=True)
    import _thread
    _thread.interrupt_main(signal.SIGINT)  # uvicorn's handler: stop accepting, finish, return
    time.sleep(GRACE_S)
    os._exit(0)


def main(argv: Optional[List[str]] = None) -> int:
    from prompt_server import launcher

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="python -m prompt_server.setup.owned serve", description=launcher.HELP)
    launcher.add_arguments(parser)
    args = parser.parse_args(argv)
    threading.Thread(target=_watch_owner, name="owner-watch", daemon=True).start()
    try:
        return launcher.run(args)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
