"""Register Avey-B with transformers' ``AutoConfig`` without making ``import aveyb`` import torch.

Importing transformers' Auto configuration module imports torch (seconds), and ``import aveyb``
must stay cheap: ``aveyb --help`` runs it. So if that module is already loaded, the configs are
registered now; otherwise a one-shot import hook registers them right after transformers loads
it, i.e. before any ``AutoConfig`` / ``AutoModel*`` call can run. The model classes follow when
the first config is built (:mod:`aveyb.model.auto`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import warnings

AUTO_CONFIG_MODULE = "transformers.models.auto.configuration_auto"


def _register_configs() -> None:
    try:
        from aveyb.model.auto import register_configs

        register_configs()
    except Exception as err:  # never break the user's transformers import; say why Auto* will not know us
        warnings.warn(f"aveyb could not register its configs with transformers' AutoConfig: {err!r}",
                      stacklevel=2)


class _CallbackLoader(importlib.abc.Loader):
    """The module's own loader, then ``callback`` once the module has run."""

    def __init__(self, loader, callback):
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name):  # get_data, get_resource_reader, ... of the real loader
        return getattr(self._loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` right after module ``name`` is first imported, then leaves ``sys.meta_path``."""

    def __init__(self, name: str, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


def install() -> None:
    """Register now if transformers' Auto configs are loaded, else as soon as they are."""
    if AUTO_CONFIG_MODULE in sys.modules:
        _register_configs()
    elif not any(isinstance(f, _AfterImport) and f.name == AUTO_CONFIG_MODULE for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(AUTO_CONFIG_MODULE, _register_configs))
