"""AUTOMATIC1111 / Forge entry point: the WebUI loads only <extension>/scripts/*.py.

How our modules get names that cannot collide with other extensions' modules:
- the WebUI glue (the folder `extension/`, a name many extensions could use)
  is loaded as the package `newspicgen_webui`; inside it, it imports its own
  modules relatively (`from .config import ...`), so it works under that name;
- the core and the lower layers keep their own distinctive top-level names
  (`newspicgen`, `prompt_server`, `style_presets`) and are found through the
  repository root, which is appended to the END of sys.path, so nothing of ours
  shadows a module another extension or the WebUI already provides. If another
  package already owns one of those names, loading stops with a message that
  says which (rather than running someone else's code under our name).
The WebUI collects the `scripts.Script` subclasses it finds in this module's
namespace, hence the import of the always-on script class below.
"""
import importlib
import importlib.util
import os
import sys

GLUE_PACKAGE = "newspicgen_webui"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUR_PACKAGES = ("newspicgen", "prompt_server", "style_presets")


def _load_glue():
    if ROOT not in sys.path:
        sys.path.append(ROOT)
    for name in OUR_PACKAGES:
        origin = os.path.dirname(os.path.abspath(importlib.import_module(name).__file__ or name))
        if os.path.dirname(origin) != ROOT:
            raise ImportError(f"NewsPicGen: the module name {name!r} is taken by {origin}; "
                              f"NewsPicGen needs its own copy in {ROOT}. Remove or rename the other one.")
    loaded = sys.modules.get(GLUE_PACKAGE)
    if loaded is not None:  # the WebUI reloads scripts on "Reload UI"; keep one identity per class
        return loaded
    folder = os.path.join(ROOT, "extension")
    spec = importlib.util.spec_from_file_location(GLUE_PACKAGE, os.path.join(folder, "__init__.py"),
                                                  submodule_search_locations=[folder])
    package = importlib.util.module_from_spec(spec)
    sys.modules[GLUE_PACKAGE] = package
    spec.loader.exec_module(package)
    return package


_load_glue()
NewsPicGenScript = importlib.import_module(f"{GLUE_PACKAGE}.alwayson").NewsPicGenScript  # found by the WebUI
importlib.import_module(f"{GLUE_PACKAGE}.webui").register()
