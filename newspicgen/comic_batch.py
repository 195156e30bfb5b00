"""`newspicgen comic INPUT --out DIR [--webui URL]`: a file of stories to comic strips.

One story at a time (a strip is already N pictures). Each finished story is one
fsync'd line in DIR/comics.jsonl, so Ctrl-C or a crash loses at most the story
in progress; a rerun skips the ids already there and retries the rest, including
those in DIR/failed.jsonl (rewritten each run with the ones still failing). With
--webui every panel is drawn and DIR/images/<id>-strip.png, -panel-N.png (each
with its infotext), -captions.txt and <id>.json are written.
One run per DIR at a time (the batch command's lock).

Exit status: 0 all done, 1 some stories failed (rerun to retry), 2 the run could
not start (bad input, server or WebUI unreachable, DIR in use).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from newspicgen.batch_io import InputError, JsonlLog, OutputLock, OutputLocked, read_articles, read_jsonl, rewrite_jsonl
from newspicgen.comic import compose_strip
from newspicgen.task_cli import CommandError, overrides, preset_store, task_client
from newspicgen.task_render import RenderedPicture, render_strip, save_strip, strip_seed, with_provenance
from newspicgen.webui_client import WebUIClient, WebUIError, safe_stem
from prompt_server.client import PromptClient
from prompt_server.comic_task import COMIC, ComicInput
from prompt_server.errors import PromptServerError
from style_presets.compose import OverrideError
from style_presets.store import PresetStore


def run_batch(args: argparse.Namespace) -> int:
    if not args.out:
        return _stop("give --out DIR for the strips of a batch")
    out = Path(args.out)
    try:
        articles, bad_rows = read_articles(args.input)
        store = preset_store(args)
        client = task_client(args, COMIC)
        webui = WebUIClient(args.webui, args.webui_auth) if args.webui else None
        if webui is not None:
            webui.check()
        out.mkdir(parents=True, exist_ok=True)
        lock = OutputLock(out).acquire()
    except (InputError, OSError, CommandError, OutputLocked, WebUIError, ValueError) as exc:
        return _stop(str(exc))
    for row in bad_rows:
        print(f"comic: skipped {args.input}:{row}", file=sys.stderr)
    try:
        return _execute(args, out, articles, store, client, webui)
    finally:
        lock.release()
        client.close()


def _execute(args: argparse.Namespace, out: Path, articles: List[Any], store: PresetStore,
             client: PromptClient, webui: Optional[WebUIClient]) -> int:
    done_records, _, _ = read_jsonl(out / "comics.jsonl")
    done = {str(r.get("id")) for r in done_records}
    todo = [a for a in articles if a.id not in done]
    failed: List[Dict[str, Any]] = []
    print(f"comic: {len(articles)} stories, {len(articles) - len(todo)} already done, {len(todo)} to do",
          file=sys.stderr)
    with JsonlLog(out / "comics.jsonl") as log:
        for article in todo:
            try:
                log.append({"id": article.id, **_one(args, out, article, store, client, webui)})
            except (PromptServerError, WebUIError, OverrideError, ValueError) as exc:
                failed.append({"id": article.id, "error": " ".join(str(exc).split())})
                print(f"comic: {article.id} failed: {failed[-1]['error']}", file=sys.stderr)
    rewrite_jsonl(out / "failed.jsonl", failed)
    print(f"comic: {len(todo) - len(failed)} done, {len(failed)} failed"
          + (" (rerun the same command to retry them)" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def _one(args: argparse.Namespace, out: Path, article: Any, store: PresetStore, client: PromptClient,
         webui: Optional[WebUIClient]) -> Dict[str, Any]:
    panels = article.extra.get("panels") or args.panels
    story = ComicInput.parse({"title": article.title, "content": article.content, "panels": panels})
    strip = client.generate_task(COMIC, story, seed=args.seed, temperature=args.temperature)
    settings = overrides(args)
    if webui is not None:
        settings["seed"] = strip_seed(settings)  # one seed for all panels, even when none was given
    composed = compose_strip(strip, store, family=args.family, preset=args.preset, seed=settings.get("seed"),
                             seed_step=args.seed_step, overrides=settings)
    record = composed.to_dict()
    if webui is not None:
        def render(payload: Dict[str, Any], provenance: Dict[str, str]) -> RenderedPicture:
            picture = webui.txt2img(payload)
            return RenderedPicture(picture.png, with_provenance(picture.infotext or "", provenance))

        rendered = render_strip(composed, render, font_path=args.font)
        record["strip"] = str(save_strip(out / "images", safe_stem(article.id), rendered, composed))
        record["captions_drawn"] = rendered.strip.captions_drawn
    return record


def _stop(message: str) -> int:
    print(f"comic: {' '.join(message.split())}", file=sys.stderr)
    return 2
