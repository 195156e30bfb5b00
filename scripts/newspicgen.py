"""AUTOMATIC1111 / Forge entry point: the WebUI loads only <extension>/scripts/*.py.

The repository root is registered as a package named `newspicgen_sdwebui`, so
our code lives in sys.modules as `newspicgen_sdwebui.extension...`,
`newspicgen_sdwebui.prompt_server...` and never collides with another
extension's top-level `extension`, `api` or `utils` module. The WebUI collects
the `scripts.Script` subclasses it finds in this module's namespace, hence the
import of the always-on script class below.
"""
import importlib.machinery
import os
import sys
import types

PACKAGE = "newspicgen_sdwebui"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _register_package() -> None:
    existing = sys.modules.get(PACKAGE)
    if existing is not None and list(getattr(existing, "__path__", [])) == [ROOT]:
        return
    spec = importlib.machinery.ModuleSpec(PACKAGE, None, is_package=True)
    spec.submodule_search_locations = [ROOT]
    package = types.ModuleType(PACKAGE, "NewsPicGen for SD WebUI, loaded from " + ROOT)
    package.__spec__, package.__path__, package.__package__ = spec, [ROOT], PACKAGE
    sys.modules[PACKAGE] = package


_register_package()

from newspicgen_sdwebui.extension import webui as _webui  # noqa: E402
from newspicgen_sdwebui.extension.alwayson import NewsPicGenScript  # noqa: E402,F401  (found by the WebUI)

_webui.register()
