"""Defer the two heavy modules highway-env imports but an evaluation never uses.

highway-env imports ``matplotlib.pyplot`` (for ``vehicle.dynamics``' plotting helper) and ``pandas``
(for observation types the toolkit replaces: ``fast_core`` gives ``KinematicObservation`` a
pandas-free ``observe``) when it is imported: about 1.3 CPU-s, paid by the evaluator's worker server
on every run before any episode can start. :func:`defer` puts a stand-in module under each name; the
first attribute read from it (``pd.DataFrame``, ``plt.subplots``) imports the real module, which
then replaces the stand-in in ``sys.modules``, so whoever uses them gets the real thing, only later.

Only the worker server calls it (``e2e_drive.eval.backends._PRELOAD``); importing e2e_drive does not.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import types
from typing import Any

#: Imported by highway-env at import time, unused by an evaluation.
DEFERRED = ("matplotlib.pyplot", "pandas")


class _Deferred(types.ModuleType):
    """A module that imports the real one on its first attribute read and then forwards to it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        # what the import system reads of a module found in sys.modules (not an initialising one)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        # inspect.getmodule (torch calls it at import) reads every module's __file__: None is skipped
        self.__file__ = None
        self.__dict__["_deferred_real"] = None

    def __getattr__(self, attr: str) -> Any:  # only called for names not set on the stand-in
        real = self.__dict__["_deferred_real"]
        if real is None:
            name = self.__name__
            if sys.modules.get(name) is self:
                del sys.modules[name]
            real = importlib.import_module(name)
            self.__dict__["_deferred_real"] = real
        return getattr(real, attr)


def defer(names: tuple[str, ...] = DEFERRED) -> None:
    """Put a stand-in under each of ``names`` not imported yet (idempotent)."""
    for name in names:
        if name not in sys.modules:
            sys.modules[name] = _Deferred(name)


defer()
