"""dvc.yaml cannot drift from the code: every file of ``src/fovea`` a stage's script imports,
directly or through other modules, is among that stage's ``deps`` (itself or a folder above it).

Otherwise editing that file would leave DVC calling the stage's stale outputs up to date.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

# Imports that only validate params.yaml (``head`` and ``data.source`` name a registered head or
# source, whose options are checked): they can make a stage refuse to start, never change what
# it writes, so a stage that does not run heads or sources need not rerun when those change.
VALIDATION_ONLY = {"src/fovea/params.py": {"fovea.heads", "fovea.data.sources"}}


def module_file(name: str) -> Path | None:
    """``fovea.a.b`` -> ``src/fovea/a/b.py`` or ``src/fovea/a/b/__init__.py`` (None: not a file)."""
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``fovea`` module ``path`` imports anywhere (module level or inside functions), with
    the packages above each (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    in_src = SRC in path.parents
    package = ""
    if in_src:
        package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, if any
    found = set()
    for name in names:
        if name.split(".")[0] != "fovea":
            continue
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {name for name in found if module_file(name) is not None}


def loads_every_module(init: Path) -> bool:
    """A package that imports all its modules itself (a registry: heads, sources)."""
    return "iter_modules(__path__)" in init.read_text()


def only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in body)


def transitive_files(script: Path) -> set[Path]:
    """The ``src/fovea`` files that running ``script`` executes, as repository-relative paths."""
    seen: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        exempt = VALIDATION_ONLY.get(path.relative_to(REPO).as_posix(), set())
        names = imported_modules(path)
        if path.name == "__init__.py" and SRC in path.parents and loads_every_module(path):
            names |= {
                module_name(p) for p in path.parent.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
            }
            names = {name for name in names if module_file(name) is not None}
        for name in names:
            if any(name == e or name.startswith(e + ".") for e in exempt):
                continue
            file = module_file(name)
            if file not in seen and file != path:
                seen.add(file)
                pending.append(file)
    return {path.relative_to(REPO) for path in seen if not only_a_docstring(path)}


def stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_imported_file_is_a_dep_of_the_stage(stage: str) -> None:
    spec = stages()[stage]
    scripts = re.findall(r"stages/\w+\.py", spec["cmd"])
    assert scripts, f"{stage}: no stages/*.py script in its cmd"
    missing = {}
    for script in scripts:
        assert covered(Path(script), spec["deps"]), f"{stage}: its script {script} is not a dep"
        for path in sorted(transitive_files(REPO / script)):
            if not covered(path, spec["deps"]):
                missing[path.as_posix()] = script
    assert not missing, f"dvc.yaml stage {stage!r} lacks deps for files its script imports: {missing}"
    # And no more: a code dep nothing imports reruns the stage for edits that cannot matter.
    used = set().union(*(transitive_files(REPO / script) for script in scripts))
    unused = [dep for dep in spec["deps"] if dep.startswith("src/") and not any(covered(path, [dep]) for path in used)]
    assert not unused, f"dvc.yaml stage {stage!r} lists code deps its script never imports: {unused}"


def test_the_walk_finds_imports_inside_functions_and_registry_packages() -> None:
    # The walk itself can fail: a lazy import inside a function and a registry's modules count.
    videos = transitive_files(REPO / "stages/videos.py")
    assert Path("src/fovea/data/sources/webvid/download.py") in videos  # via the registry package
    assert Path("src/fovea/data/control.py") in videos
    assert Path("src/fovea/heads/film.py") not in videos  # params' validation-only import
    train = transitive_files(REPO / "stages/train.py")
    assert Path("src/fovea/heads/film.py") in train and Path("src/fovea/io.py") in train
