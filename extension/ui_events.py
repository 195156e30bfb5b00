"""The tab's small event framework: handlers return an `Outcome`, `make_wire` applies it.

A handler never touches gradio: it takes the values on screen and returns an
Outcome naming only the components it changes, plus a warning on trouble.
Components not named keep what the user has there, so an error can never wipe
typed or edited text. Works with gradio 3.41 (A1111) and 4.40 (Forge).
"""
from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

from .messages import plain_text

log = logging.getLogger("newspicgen")


@dataclass
class Choices:
    """A new choice list and value (a list for a multiselect) for a dropdown or radio;
    interactivity too unless None."""
    choices: List[str]
    value: Any
    interactive: Optional[bool] = None


@dataclass
class NewChoices:
    """A new choice list for a dropdown; what is chosen stays."""
    choices: List[str]


@dataclass
class Editable:
    """A new value (None: keep what is there) and interactivity for a field or button."""
    value: Any
    interactive: bool


@dataclass
class Outcome:
    values: Dict[str, Any] = field(default_factory=dict)
    warning: Optional[str] = None


def asked(get: Callable[[], Any], default: Any = None) -> Any:
    """What the WebUI answers (its LoRAs, samplers, ...), or `default` when asking fails:
    those lists are a nicety, and never fail an event."""
    try:
        return get()
    except Exception:
        log.debug("NewsPicGen: asking the WebUI failed", exc_info=True)
        return default


def warnings_markdown(warnings: List[str]) -> str:
    """One paragraph per warning: Markdown joins lines that a single newline separates."""
    return "\n\n".join(f"⚠️ {w}" for w in warnings)


def to_gradio(gr, value: Any) -> Any:
    if isinstance(value, Choices):
        if value.interactive is None:
            return gr.update(choices=value.choices, value=value.value)
        return gr.update(choices=value.choices, value=value.value, interactive=value.interactive)
    if isinstance(value, NewChoices):
        return gr.update(choices=value.choices)
    if isinstance(value, Editable):
        if value.value is None:
            return gr.update(interactive=value.interactive)
        return gr.update(value=value.value, interactive=value.interactive)
    return value


def make_wire(gr, components: Dict[str, Any], notify: Callable[[str], None]):
    """wire(event, handler, input names, output names): run a handler, show its warning,
    update only the components the Outcome names."""

    def wire(event, handler, inputs: Sequence[str], outputs: Sequence[str], queue: bool = True):
        def run(*values):
            try:
                outcome = handler(*values)
            except Exception as exc:  # a bug must not wipe the page: keep everything, say what broke
                log.exception("NewsPicGen tab: %s failed", getattr(handler, "__name__", handler))
                outcome = Outcome(warning=f"unexpected error ({type(exc).__name__}: {exc})")
            if outcome.warning:  # a toast shows Markdown as typed; the page's Markdown fields keep theirs
                notify(plain_text(outcome.warning))
            result = [to_gradio(gr, outcome.values[name]) if name in outcome.values else gr.update()
                      for name in outputs]
            return result[0] if len(result) == 1 else result

        # gradio 4 describes the endpoint from the signature; *values would read as zero parameters
        run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in inputs])
        return event(fn=run, inputs=[components[n] for n in inputs], outputs=[components[n] for n in outputs],
                     queue=queue, show_progress="minimal" if queue else "hidden",
                     api_name=False)  # the extension's API is its REST routes, not gradio endpoints

    return wire


def notifier(gr, hooks) -> Callable[[str], None]:
    if hooks is not None and getattr(hooks, "in_webui", False):
        return hooks.warn  # the WebUI shows a toast and logs to its console
    if hasattr(gr, "Warning"):  # gradio >= 3.38; needs the queue, which A1111 and tab_app enable
        return lambda message: gr.Warning(message)
    return lambda message: log.warning("%s", message)
