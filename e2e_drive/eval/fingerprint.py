"""What a result depends on, as digests: the toolkit's code, each agent's files and code, each scenario's code.

A run's configuration (run.json, :mod:`e2e_drive.eval.plan`) already pins the scenarios' validated
configs, the conditions, the seeds and each agent's file content. This module adds what run.json does not
see and a result still depends on:

- :func:`toolkit_fingerprint`: the package version, git commit, and the sha256 of every ``.py`` file of
  ``e2e_drive`` (so an edit to the simulator, the metrics or a shipped agent's code is seen even without a
  commit), and the versions of the libraries that shape an episode (numpy, torch, highway-env, ...);
- :func:`agent_fingerprint`: an agent file's content (comments aside), the sha256 of every file it names
  (checkpoints), followed into agent files it names (a safety filter's driver), and the source digest of
  every ``package.module:Class`` it names; for a ``module:Class`` spec, that class's source digest;
- :func:`scenario_code_digest`: the sha256 of the module that declares a scenario.

``e2e-drive benchmark`` reuses an earlier run's episodes of an agent only when these are unchanged, and
``e2e-drive verify`` names the one that changed when a re-run episode does not match its bundle.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path
from typing import Any, Mapping

from e2e_drive.provenance import REPO_ROOT, git_commit, git_dirty

__all__ = ["agent_fingerprint", "describe_change", "first_difference", "portable_spec", "scenario_code_digest",
           "toolkit_fingerprint"]

#: Libraries whose version can change an episode (simulation, rendering, networks).
LIBRARIES = ("numpy", "torch", "highway_env", "gymnasium", "cv2", "scipy")
_AGENT_SUFFIXES = (".toml", ".yaml", ".yml")


def _package_source_digest() -> str:
    """sha256 over every .py file of the e2e_drive package (relative path and content), in path order."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        if "__pycache__" in f.parts:
            continue
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def toolkit_fingerprint() -> dict[str, Any]:
    """The toolkit a result was made with: version, commit (None outside git), uncommitted changes,
    the digest of its Python source, and the libraries' versions."""
    import e2e_drive

    return {"version": str(getattr(e2e_drive, "__version__", "unknown")), "commit": git_commit(),
            "uncommitted_changes": git_dirty(), "source_sha256": _package_source_digest(),
            "libraries": _library_versions()}


def _class_digest(spec: str) -> str | None:
    from e2e_drive.eval.plan import _class_source_digest

    return _class_source_digest(spec)


def agent_fingerprint(spec: str, _seen: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Digests of what defines an agent (see the module docstring). ``spec``: an agent file or
    ``package.module:Class`` (a registered type name: its class)."""
    p = Path(spec)
    if p.suffix.lower() in _AGENT_SUFFIXES or p.is_file():
        from e2e_drive.agents.loading import AGENT_TYPES, _read_file
        from e2e_drive.eval.plan import _sha256, named_files

        p = p.resolve()
        data = _read_file(p)
        files: dict[str, str] = {}
        agents: dict[str, Any] = {}

        for value, cand in named_files(data.get("params", {}), p.parent):
            if cand.suffix.lower() in _AGENT_SUFFIXES and str(cand.resolve()) not in _seen:
                agents[value] = agent_fingerprint(str(cand), _seen | {str(p)})
            else:
                files[value] = _sha256(cand)
        cls = data.get("class") or AGENT_TYPES.get(str(data.get("type")))
        out: dict[str, Any] = {"file": p.name, "content": data, "referenced_files_sha256": files}
        if agents:
            out["referenced_agents"] = agents
        if isinstance(cls, str) and ":" in cls:
            out["class"] = cls
            out["source_sha256"] = _class_digest(cls)
        return out
    from e2e_drive.agents.loading import AGENT_TYPES

    cls = AGENT_TYPES.get(spec, spec)
    return {"class": cls, "source_sha256": _class_digest(cls)}


def scenario_code_digest(scenario: str) -> str | None:
    """sha256 of the source file of the module that declares scenario ``scenario`` (None if unknown)."""
    from e2e_drive.eval.plan import _sha256
    from e2e_drive.scenarios.base import get_scenario

    try:
        declaration = get_scenario(scenario)
        module = importlib.import_module(declaration.sim_class.__module__)
    except Exception:
        return None
    origin = getattr(module, "__file__", None)
    return _sha256(Path(origin)) if origin else None


def portable_spec(spec: str) -> str:
    """An agent spec as another clone can use it: a file inside the repository relative to its root
    (``agents/e2e.toml``), else relative to the working folder (``my_e2e.toml``), else as given; a
    ``module:Class`` unchanged."""
    p = Path(spec)
    if p.suffix.lower() in _AGENT_SUFFIXES or p.is_file():
        for root in (REPO_ROOT, Path.cwd().resolve()):
            try:
                return p.resolve().relative_to(root).as_posix()
            except ValueError:
                continue
    return spec


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first key path at which two JSON-like values differ ("" when the roots differ), or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                return f"{where}.{k}".lstrip(".")
            d = first_difference(a[k], b[k], f"{where}.{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{where} (length {len(a)} vs {len(b)})".lstrip(".")
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{where}[{i}]")
            if d is not None:
                return d
        return None
    return None if a == b else where.lstrip(".")


def describe_change(label: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str | None:
    """A phrase naming what changed between two agent fingerprints ("its checkpoint x.pt changed"), or None."""
    if old == new:
        return None
    if old is None or new is None:
        return f"agent '{label}' has no fingerprint to compare"
    where = first_difference(old, new) or ""
    if "referenced_files_sha256." in where:
        name = where.split("referenced_files_sha256.", 1)[1]
        kind = "checkpoint" if name.endswith((".pt", ".pth", ".ckpt", ".safetensors")) else "file"
        return f"agent '{label}': its {kind} {name} changed"
    if where.endswith("source_sha256"):
        return f"agent '{label}': the source of its class {new.get('class') or old.get('class')} changed"
    if where.startswith("content"):
        return f"agent '{label}': its agent file {new.get('file') or old.get('file')} changed (at '{where}')"
    nested = re.match(r"referenced_agents\.(.+?)\.content\.?(.*)$", where)
    if nested:
        return (f"agent '{label}': the agent file {nested[1]} that {new.get('file') or old.get('file')} names "
                f"changed (at '{nested[2] or 'content'}')")
    return f"agent '{label}' changed (at '{where}')"
