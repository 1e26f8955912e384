"""The house's import rules, read from the source (ast, nothing imported) and checked transitively (what a
module reaches through everything it imports, parent packages' __init__ included, as Python runs them): no
import circle inside `train`, `data` reaches neither `train` nor `eval`, `train` never reaches `eval`, `eval`
imports from `train` only its public surface and reaches none of the training loop's machinery, no arrow in
`train` climbs back up (floor < algorithm folders < registry < the rest), and no runtime package imports the
asset builders."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("train", "data", "eval", "builders")
# What eval may import from train: the model files (the frozen target, draft heads and their export files).
# Everything else eval shares with train (tracking, paths, loaders) lives on the ground floor, in `data`.
# eval loads drafts (train.modeling), writes engine layouts for serving them (train.export), and its sweep
# runner composes training configs as `python -m train` does (train.config registers the schema) and hands a
# point's target to training as recipes do (train.pipeline: one home for how a recipe's target reaches a stage).
# The algorithms (train.drafts: registry, saved exports, each folder's drafter) and the decoding floor their
# drafters stand on (train.decoding) are part of that surface: eval drafts with what each algorithm declares.
TRAIN_SURFACE_FOR_EVAL = (
    "train.modeling",
    "train.decoding",
    "train.drafts",
    "train.export",
    "train.config",
    "train.pipeline",
)
# What eval may never reach, even through the surface: the training loop and its DeepSpeed machinery.
TRAINING_MACHINERY = (
    "train.trainer",
    "train.engine",
    "train.checkpoint",
    "train.resume",
    "train.loss_seam",
    "train.feature_source",
    "train.preemption",
    "train.guards",
    "train.__main__",
)
# train's layers, bottom up; an import may go down or sideways, never up. Algorithm folders may build on
# each other (EAGLE-3's drafter extends EAGLE's) as long as no circle forms (test_no_import_circle_in_train).
REGISTRY = ("train.drafts.registry", "train.drafts.io")
FLOOR = (
    "train.modeling",
    "train.decoding",
    "train.losses",
    "train.objectives",
    "train.export_formats",
    "train.settings",
    "train.distributed",
    "train.drafts.spec",
)


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of ours that `path` imports, at the top or inside a function (a lazy import is still a
    dependency). `from a.b import c` counts a.b.c when c is a module, else a.b."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import (the house uses absolute imports)"
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}
    graph = {name: _imports(path, set(files)) for name, path in files.items()}
    # The registry imports every algorithm folder by listing them (importlib), which no import statement
    # shows: those are edges too.
    graph["train.drafts.registry"] |= {f"train.drafts.{p.name}" for p in ALGORITHM_DIRS}
    return graph


ALGORITHM_DIRS = sorted(p.parent for p in (REPO / "train" / "drafts").glob("*/__init__.py"))


GRAPH = _graph()


def _parents(module: str) -> list[str]:
    """The packages Python initialises before `module` (train.drafts.eagle.head -> train, train.drafts,
    train.drafts.eagle): importing a module runs every parent's __init__.py, so those are edges too."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


RUN_GRAPH = {m: {*deps, *(p for d in deps for p in _parents(d) if p in GRAPH)} for m, deps in GRAPH.items()}


def _reach(module: str) -> set[str]:
    """Every module of ours that importing `module` runs (its own import excluded)."""
    seen: set[str] = set()
    todo = [*RUN_GRAPH.get(module, ()), *(p for p in _parents(module) if p in GRAPH)]
    while todo:
        m = todo.pop()
        if m not in seen and m in RUN_GRAPH:
            seen.add(m)
            todo.extend(RUN_GRAPH[m])
    seen.discard(module)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_import_reader_sees_the_known_edges() -> None:
    """Guards the reader itself: a reader that found nothing would pass every rule below."""
    assert "train.modeling.target" in GRAPH["eval.engine"]
    assert "data.target_io" in GRAPH["train.modeling.target"]
    assert "data.blocks" in GRAPH["data.__main__"]  # imported inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


TRAIN_GRAPH = {m: {d for d in deps if _in(d, "train")} for m, deps in GRAPH.items() if _in(m, "train")}


def test_no_import_circle_in_train() -> None:
    assert _cycles(TRAIN_GRAPH) == []


def test_the_transitive_reader_follows_parents_and_chains() -> None:
    """Guards the closure: an algorithm's head reaches its folder's __init__ (Python runs it), and through it
    the objective; eval's runner reaches the registry through the drafter loader."""
    assert "train.drafts.eagle" in _reach("train.drafts.eagle.head")
    assert "train.drafts.eagle.objective" in _reach("train.drafts.eagle.head")
    assert "train.drafts.registry" in _reach("eval.run")
    assert "train.drafts.eagle.drafter" in _reach("eval.run")  # through the registry's listing


def test_data_reaches_neither_train_nor_eval() -> None:
    bad = {m: sorted(d for d in _reach(m) if _in(d, "train") or _in(d, "eval"))
           for m in GRAPH if _in(m, "data")}  # fmt: skip
    assert {m: d for m, d in bad.items() if d} == {}


def test_eval_imports_only_the_public_surface_of_train() -> None:
    bad = {m: sorted(d for d in deps if _in(d, "train") and not any(_in(d, s) for s in TRAIN_SURFACE_FOR_EVAL))
           for m, deps in GRAPH.items() if _in(m, "eval")}  # fmt: skip
    assert {m: d for m, d in bad.items() if d} == {}


def test_eval_never_reaches_the_training_loop() -> None:
    bad = {m: sorted(d for d in _reach(m) if any(_in(d, t) for t in TRAINING_MACHINERY))
           for m in GRAPH if _in(m, "eval")}  # fmt: skip
    assert {m: d for m, d in bad.items() if d} == {}


def _layer(module: str) -> int:
    if any(_in(module, f) for f in FLOOR):
        return 0
    if _in(module, "train.drafts") and module != "train.drafts" and not any(_in(module, r) for r in REGISTRY):
        return 1  # an algorithm folder
    return 2 if any(_in(module, r) for r in REGISTRY) or module == "train.drafts" else 3


def test_no_arrow_in_train_climbs_back_up() -> None:
    """Floor (shared pieces) < algorithm folders < registry < the rest (trainer, export, config, pipeline)."""
    bad = sorted(f"{m} ({_layer(m)}) -> {d} ({_layer(d)})"
                 for m, deps in TRAIN_GRAPH.items() for d in deps if _layer(d) > _layer(m))  # fmt: skip
    assert bad == []


def test_train_never_reaches_eval_and_no_runtime_package_imports_the_builders() -> None:
    bad = {
        m: sorted(d for d in _reach(m) if _in(d, "builders") or (_in(m, "train") and _in(d, "eval")))
        for m in GRAPH
        if not _in(m, "builders")
    }
    assert {m: d for m, d in bad.items() if d} == {}
