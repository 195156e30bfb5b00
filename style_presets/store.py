"""Built-in and user presets: list, load, save, duplicate, delete.

Built-ins ship read-only in style_presets/builtin/. User presets live in a
folder outside the code tree and override built-ins of the same name, so an
update of the extension never overwrites an artist's work. Every file is
NAME.json; saving writes a temp file and renames it over the old one, keeping
the old one as NAME.json.bak.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import pydantic

from prompt_server.compat import describe_validation_error
from prompt_server.defaults import ENV_PRESET_DIR
from prompt_server.files import atomic_write
from prompt_server.schema import PictureType
from style_presets.bases import DEFAULT_BASE, parse_base
from style_presets.family_file import is_family_file, read_family
from style_presets.preset import StylePreset
from style_presets.reading import MAX_PRESET_BYTES, ReadError, parse_json, read_text

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
DEFAULT_FAMILY = "newspicgen-comic"


def default_user_dir() -> Path:
    """$NEWSPICGEN_PRESET_DIR, else the per-user config folder (XDG / %APPDATA%)."""
    env = os.environ.get(ENV_PRESET_DIR)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        base = Path(os.environ["APPDATA"])
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "newspicgen" / "presets"


class PresetLoadError:
    """A preset file that could not be loaded: which file, which field, why."""

    def __init__(self, path: Union[str, Path], field: str, message: str):
        self.path, self.field, self.message = str(path), field, message

    def __str__(self) -> str:
        return f"{self.path}: {self.field}: {self.message}"

    def __repr__(self) -> str:
        return f"PresetLoadError({str(self)!r})"


class PresetNotFound(KeyError):
    def __init__(self, name: str, available: List[str], what: str = "preset named"):
        super().__init__(name)
        self.name, self.available, self.what = name, available, what

    def __str__(self) -> str:
        return f"no {self.what} {self.name!r}; available: {', '.join(self.available) or '(none)'}"


class PresetError(ValueError):
    """A refused store operation (invalid preset, read-only built-in, name taken)."""


def read_preset(path: Path) -> Tuple[Optional[StylePreset], List[PresetLoadError]]:
    """Load one file; on failure return the reasons instead of raising."""
    try:
        data = parse_json(read_text(path, MAX_PRESET_BYTES))
    except ReadError as exc:
        return None, [PresetLoadError(path, "(file)", str(exc))]
    if not isinstance(data, dict):
        return None, [PresetLoadError(path, "(file)", "must hold one JSON object (one preset per file)")]
    try:
        preset = StylePreset.from_dict(data)
    except pydantic.ValidationError as exc:
        return None, [PresetLoadError(path, where, why) for where, why in describe_validation_error(exc)]
    if preset.name != path.stem:
        return None, [PresetLoadError(path, "name", f"{preset.name!r} differs from the file name "
                                                    f"{path.stem!r}; make them the same")]
    return preset, []


class PresetStore:
    def __init__(self, user_dir: Union[str, Path, None] = None, *,
                 builtin_dir: Union[str, Path, None] = None, default_family: str = DEFAULT_FAMILY):
        self.user_dir = Path(user_dir).expanduser() if user_dir else default_user_dir()
        self.builtin_dir = Path(builtin_dir) if builtin_dir else BUILTIN_DIR
        self.default_family = default_family
        self.errors: List[PresetLoadError] = []
        self._builtin: Dict[str, StylePreset] = {}
        self._user: Dict[str, StylePreset] = {}
        # The WebUI calls a store from several threads at once (a page load runs many events);
        # one reloads while the others wait, so none reads a half-loaded store.
        self._lock = threading.RLock()
        self.reload()

    # -- reading -------------------------------------------------------------------
    def reload(self) -> None:
        with self._lock:
            errors: List[PresetLoadError] = []
            seen = self._user_dir_state()
            builtin, user = self._load_dir(self.builtin_dir, errors), self._load_dir(self.user_dir, errors)
            self.errors, self._builtin, self._user, self._seen = errors, builtin, user, seen

    def _user_dir_state(self) -> Optional[tuple]:
        """Name, mtime and size of every user preset file: cheap to read, changes with any edit."""
        try:
            return tuple(sorted((p.name, s.st_mtime_ns, s.st_size)
                                for p in self.user_dir.glob("*.json") for s in (p.stat(),)))
        except OSError:  # a file removed while listing: report "changed"
            return None

    def refresh(self) -> bool:
        """Reload if the user folder changed on disk (a preset saved by another process or
        dropped in by hand), so long-lived stores show it without a restart."""
        with self._lock:
            state = self._user_dir_state()
            if state is not None and state == self._seen:
                return False
            self.reload()
            return True

    def _load_dir(self, folder: Path, errors: List[PresetLoadError]) -> Dict[str, StylePreset]:
        presets: Dict[str, StylePreset] = {}
        if not folder.is_dir():
            if folder.exists():
                errors.append(PresetLoadError(folder, "(folder)", "is a file, not a folder; "
                                                   "point the preset folder setting at a directory"))
            return presets
        for path in sorted(folder.glob("*.json")):
            if is_family_file(path):
                found, problems = self._read_family(path)
            else:
                preset, problems = read_preset(path)
                found = [preset] if preset is not None else []
            errors.extend(problems)
            presets.update((preset.name, preset) for preset in found)
        return presets

    def _read_family(self, path: Path) -> Tuple[List[StylePreset], List[PresetLoadError]]:
        if path.parent.resolve() != self.builtin_dir.resolve():
            return [], [PresetLoadError(path, "(file)", "family files are read from the built-in folder only; "
                                                        "save each preset as NAME.json here instead")]
        presets, problems = read_family(path)
        return presets, [PresetLoadError(path, where, why) for where, why in problems]

    def _merged(self) -> Dict[str, StylePreset]:
        return {**self._builtin, **self._user}

    def list(self) -> List[StylePreset]:
        merged = self._merged()
        return [merged[name] for name in sorted(merged, key=str.lower)]

    def names(self) -> List[str]:
        return [preset.name for preset in self.list()]

    def families(self) -> List[str]:
        return sorted({preset.family for preset in self.list()})

    def get(self, name: str) -> StylePreset:
        merged = self._merged()
        if name not in merged:
            raise PresetNotFound(name, self.names())
        return merged[name]

    def is_builtin(self, name: str) -> bool:
        """True when `name` is a built-in not overridden by a user preset."""
        return name in self._builtin and name not in self._user

    def builtin_names(self) -> List[str]:
        return sorted(self._builtin, key=str.lower)

    def user_names(self) -> List[str]:
        return sorted(self._user, key=str.lower)

    def overrides_builtin(self, name: str) -> bool:
        return name in self._builtin and name in self._user

    def user_path(self, name: str) -> Path:
        return self.user_dir / f"{name}.json"

    def default_for(self, picture_type: str, family: Optional[str] = None,
                    base: Optional[str] = None) -> StylePreset:
        """The preset used when the caller names none.

        Within the family (the default family when None), among the presets serving
        the type: made for `base` (the loaded model's family; None: unknown, then
        DEFAULT_BASE) first, then those made for any model, then the others; among
        equals, one that needs no LoRA or embedding, then the most specific (fewest
        types), then the name. A preset of another base is returned only when the
        family has nothing closer; compose(base=...) says so.
        """
        code = PictureType.parse(picture_type).value
        family = family or self.default_family
        wanted = parse_base(base) or DEFAULT_BASE
        candidates = [p for p in self.list() if p.family == family and code in p.types]
        if not candidates:
            if family not in self.families():
                raise PresetNotFound(family, self.families(), "preset family")
            raise PresetNotFound(code, [p.name for p in self.list() if code in p.types],
                                 f"{family} preset for picture type")

        def rank(p: StylePreset) -> tuple:
            fit = 0 if p.base == wanted else 1 if p.base is None else 2
            return fit, p.needs_networks(), len(p.types), p.name.lower()

        return min(candidates, key=rank)

    def resolve(self, name: Optional[str], picture_type: str, family: Optional[str] = None,
                base: Optional[str] = None) -> StylePreset:
        """A named preset (whatever its base), else the family's default for the type and
        base, else the default family's."""
        if name:
            return self.get(name)
        if family and family != self.default_family:
            if family not in self.families():
                raise PresetNotFound(family, self.families(), "preset family")
            try:
                return self.default_for(picture_type, family, base)
            except PresetNotFound:
                pass  # the family has nothing for this type: the global default serves it
        return self.default_for(picture_type, base=base)

    # -- writing -------------------------------------------------------------------
    def save(self, preset: Union[StylePreset, dict]) -> Path:
        """Validate, then write atomically to the user folder; the old file becomes .bak."""
        try:
            data = preset.to_dict() if isinstance(preset, StylePreset) else dict(preset)
            preset = StylePreset.from_dict(data)  # re-validate: a model may have been mutated
        except pydantic.ValidationError as exc:
            reasons = "; ".join(f"{where}: {why}" for where, why in describe_validation_error(exc))
            raise PresetError(f"preset not saved, nothing changed on disk: {reasons}") from None
        target = self.user_path(preset.name)
        with self._lock:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            if target.is_file():  # not a FIFO or device left under the name: reading one would block
                atomic_write(target.with_name(target.name + ".bak"), target.read_bytes())
            atomic_write(target, preset.to_json().encode("utf-8"))
            self._user[preset.name] = preset
            self._drop_errors_for(target)
        return target

    def duplicate(self, name: str, new_name: str) -> StylePreset:
        if new_name in self._merged():
            raise PresetError(f"a preset named {new_name!r} already exists; pick another name")
        source = self.get(name)
        try:
            copy = source.copy_with(name=new_name)
        except pydantic.ValidationError as exc:
            raise PresetError(f"cannot duplicate as {new_name!r}: "
                              f"{describe_validation_error(exc)[0][1]}") from None
        self.save(copy)
        return copy

    def delete(self, name: str) -> None:
        """Delete a user preset (kept as NAME.json.bak). Built-ins cannot be deleted."""
        with self._lock:
            if name not in self._user:
                if name in self._builtin:
                    raise PresetError(f"{name!r} is a built-in preset and cannot be deleted; "
                                      "duplicate it or save your own version under that name instead")
                raise PresetNotFound(name, self.names())
            target = self.user_path(name)
            if target.exists():
                os.replace(target, target.with_name(target.name + ".bak"))
            del self._user[name]

    def _drop_errors_for(self, path: Path) -> None:
        self.errors = [e for e in self.errors if Path(e.path) != path]

