"""Make untrusted model text inert before it enters a Stable Diffusion prompt.

The text stays readable for the text encoder; only what the WebUI (A1111 1.10
prompt_parser / extra_networks, the Comments script) or the Dynamic Prompts
extension would treat as syntax is defused:

- extra-network tags `<name:...>` (lora, lyco, hypernet, ...) are removed, then
  every remaining `<` / `>`, so no tag can be assembled from the leftovers;
- backslashes are dropped first, so the model cannot un-escape our escapes;
- `( ) [ ]` are escaped (`\\(` ...), which A1111 renders as the literal char;
- `{ }` become escaped parentheses and `|` becomes `/`: Dynamic Prompts has no
  reliable escape for braces, and "(red/blue)" still reads as the model meant;
- runs of underscores shrink to one, so no `__wildcard__` can form;
- a colon followed by a number loses the colon, so model text never carries a
  `:1.5` weight or `:0.5` schedule step into a bracket the preset opens;
- uppercase AND / BREAK (and Regional Prompter's ADDCOMM/ADDBASE/ADDCOL/ADDROW),
  which act only in uppercase, are lower-cased;
- `#` (the Comments script cuts from it to the line end) becomes a space, and a
  literal "Negative prompt:" becomes "negative prompt -" so PNG Info cannot
  mistake a prompt line for the negative one;
- control characters and all whitespace runs become one space.
"""
from __future__ import annotations

import re

_EXTRA_NETWORK_TAG = re.compile(r"<[^<>]*:[^<>]*>")
_ANGLES = re.compile(r"[<>]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff]")
_UNDERSCORES = re.compile(r"_{2,}")
_COLON_NUMBER = re.compile(r":(?=[\s:]*[+\-.\d])")
_KEYWORDS = re.compile(r"\b(AND|BREAK|ADDCOMM|ADDBASE|ADDCOL|ADDROW)\b")
_NEGATIVE_MARK = re.compile(r"negative prompt:", re.IGNORECASE)
_ESCAPES = str.maketrans({"(": r"\(", ")": r"\)", "[": r"\[", "]": r"\]"})
_WHITESPACE = re.compile(r"\s+")


def neutralize(text: str) -> str:
    """Model text -> the same words with no live A1111 / Dynamic Prompts syntax."""
    text = _CONTROL.sub(" ", str(text))
    text = _EXTRA_NETWORK_TAG.sub(" ", text)
    text = _ANGLES.sub(" ", text)
    text = text.replace("\\", " ").replace("#", " ")
    text = text.replace("{", "(").replace("}", ")").replace("|", "/")
    text = _UNDERSCORES.sub("_", text)
    text = _COLON_NUMBER.sub(" ", text)
    text = _KEYWORDS.sub(lambda m: m.group(1).lower(), text)
    text = _NEGATIVE_MARK.sub("negative prompt -", text)
    text = text.translate(_ESCAPES)
    return _WHITESPACE.sub(" ", text).strip()
