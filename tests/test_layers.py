"""No layer imports a higher one, in the order the README's "Layers" paragraph states.

The README lists the layers lowest first, separated by ``->``; names within one step share
a layer. A name is a module (``config``), a package (``sim/``) or a file name pattern
(``*.cli_commands``: any module of that name, wherever it lives). Every import in
``e2e_drive/``, at module level or inside a function, is read with ``ast``.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "e2e_drive"


def readme_layers(text: str) -> list[list[str]]:
    """The layers named in the README paragraph that starts with 'Layers', lowest first."""
    paragraph = next((p for p in re.split(r"\n\s*\n", text) if p.lstrip().startswith("Layers")), None)
    if paragraph is None:
        raise AssertionError("README.md has no paragraph starting with 'Layers'")
    # the list ends at the paragraph's first full stop outside backticks
    masked = re.sub(r"`[^`]*`", lambda m: "x" * len(m.group()), paragraph)
    end = re.search(r"\.(\s|$)", masked)
    chain = paragraph[: end.start() if end else len(paragraph)]
    steps = [re.findall(r"`([^`]+)`", step) for step in chain.split("->")]
    return [step for step in steps if step]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str, layers: list[list[str]]) -> int | None:
    """Index of the layer a module belongs to; the most specific name wins (a file pattern
    beats its package)."""
    rel = module.split(".")[1:]  # drop 'e2e_drive'
    best: tuple[int, int] | None = None  # (specificity, layer)
    for index, names in enumerate(layers):
        for name in names:
            if name.startswith("*."):
                if rel and fnmatch.fnmatch(rel[-1], name[2:]):
                    score = 100
                else:
                    continue
            else:
                parts = name.rstrip("/").removesuffix(".py").split("/")
                if parts == ["__init__"]:
                    parts = []
                if rel[: len(parts)] != parts or (not parts and rel):
                    continue
                score = len(parts)
            if best is None or score > best[0]:
                best = (score, index)
    return None if best is None else best[1]


def imports_of(path: Path, module: str, modules: dict[str, Path]) -> list[tuple[int, str]]:
    """(line, imported e2e_drive module) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if candidate in modules else base))
    result: list[tuple[int, str]] = []
    for line, name in found:
        if name != "e2e_drive" and not name.startswith("e2e_drive."):
            continue
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if (line, name) not in result:
            result.append((line, name))
    return result


LAYERS = readme_layers((ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_names_layers_that_exist():
    modules = all_modules()
    assert len(LAYERS) >= 6, LAYERS
    for names in LAYERS:
        for name in names:
            if name.startswith("*."):
                assert any(m.rsplit(".", 1)[-1] == name[2:] for m in modules), f"README layer {name!r} matches no module"
                continue
            dotted = "e2e_drive." + name.rstrip("/").removesuffix(".py").replace("/", ".")
            dotted = "e2e_drive" if dotted == "e2e_drive.__init__" else dotted
            assert dotted in modules, f"README names layer {name!r} but e2e_drive has no {dotted}"


def test_every_module_has_a_layer():
    missing = [m for m in all_modules() if m != "e2e_drive" and layer_of(m, LAYERS) is None]
    assert not missing, f"modules in no README layer: {missing}"


def test_no_module_imports_a_higher_layer():
    modules = all_modules()
    violations = []
    for module, path in modules.items():
        own = layer_of(module, LAYERS)
        for line, imported in imports_of(path, module, modules):
            theirs = layer_of(imported, LAYERS)
            if own is not None and theirs is not None and theirs > own:
                violations.append(f"{path.relative_to(ROOT)}:{line} ({'/'.join(LAYERS[own])}) imports "
                                  f"{imported} ({'/'.join(LAYERS[theirs])})")
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    """The reader finds a function-level import of a higher layer, and a relative one."""
    pkg = tmp_path / "e2e_drive"
    (pkg / "sim").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sim" / "__init__.py").write_text("")
    (pkg / "env.py").write_text("")
    (pkg / "sim" / "low.py").write_text("def f():\n    from e2e_drive import env\n    from .. import env as e\n")
    mods = {module_name_in(p, tmp_path): p for p in pkg.rglob("*.py")}
    found = imports_of(pkg / "sim" / "low.py", "e2e_drive.sim.low", mods)
    assert [name for _, name in found] == ["e2e_drive.env", "e2e_drive.env"]
    layers = [["sim/"], ["env"]]
    assert layer_of("e2e_drive.sim.low", layers) == 0 and layer_of("e2e_drive.env", layers) == 1


def module_name_in(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

