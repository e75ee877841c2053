"""The house's layers: no import cycles anywhere, ``labelspace.io`` below everything, and the label space
below the detector (data flows one way: taxonomy files → labelspace → detector)."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"labelspace": "scaledet.labelspace", "detector": "scaledet.detector", "cli": "scaledet.cli"}


def _modules() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([package, *parts])] = path
    return modules


def import_graph() -> nx.DiGraph:
    """Module → module for every import statement, top-level or inside a function, resolved to the most
    specific scaledet module it names (``from .data import transforms`` is an edge to the submodule)."""
    modules = _modules()
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                parts = base.split(".")
                module = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else (node.module or "")
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_no_module_imports_a_module_that_imports_it_back():
    cycles = [sorted(c) for c in nx.strongly_connected_components(import_graph()) if len(c) > 1]
    assert cycles == []


def test_io_is_below_everything_and_the_label_space_below_the_detector():
    graph = import_graph()
    for source, target in graph.edges:
        if source.startswith("scaledet.labelspace.io."):
            assert target.startswith("scaledet.labelspace.io"), f"{source} imports {target}"
        if source.startswith("scaledet.labelspace"):
            assert not target.startswith(("scaledet.detector", "scaledet.cli")), f"{source} imports {target}"
        if source.startswith("scaledet.detector"):
            assert not target.startswith("scaledet.cli"), f"{source} imports {target}"


def test_the_graph_sees_imports_inside_functions():
    """A check that cannot fail is no check: the resolver must find a known function-level import."""
    assert import_graph().has_edge("scaledet.labelspace.io.atomic", "scaledet.labelspace.io.temporaries")


def test_every_package_folder_is_in_the_distribution():
    """A folder with an ``__init__.py`` missing from ``[tool.setuptools] packages`` works in an editable
    install (the folder is on the path) and is absent from a wheel: ``pip install .`` would then fail on
    the first import of it."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {package: folder for package, folder in config["package-dir"].items()}
    found = {".".join([package, *init.parent.relative_to(ROOT / folder).parts])
             for package, folder in roots.items() for init in (ROOT / folder).rglob("__init__.py")}
    assert found - listed == set()


def test_config_errors_and_scoring_files_never_import_torch(tmp_path):
    """A typo in a config and ``scaledet eval --results`` are answered before torch is imported (about
    2.5 s of CPU on every such command): run with a ``torch`` package on the path that fails to import,
    both print their own one-line answer. The evaluators a config may name are the evaluation package's."""
    from conftest import run_cli
    from scaledet.detector.config_types import EVALUATOR_NAMES, SAMPLING_MODES
    from scaledet.detector.evaluation import EVALUATORS

    assert tuple(EVALUATORS) == EVALUATOR_NAMES and SAMPLING_MODES == ("per_dataset", "mixed")
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("torch was imported")\n')
    env = {"PYTHONPATH": str(fake.parent)}
    config = tmp_path / "bad.yaml"
    config.write_text("datasets: []\n")
    done = run_cli("scaledet", "train", "--config", str(config), env=env, fresh=True)
    assert done.returncode == 2 and "'datasets' must list at least one training dataset" in done.stderr, done.stderr
    done = run_cli("scaledet", "eval", "--config", str(config), env=env, fresh=True)
    assert done.returncode == 2 and "'datasets' must list" in done.stderr, done.stderr
    results = tmp_path / "results.json"
    results.write_text("[]")
    done = run_cli("scaledet", "eval", "--results", str(results), "--annotations", str(tmp_path / "missing.json"),
                   env=env, fresh=True)
    assert done.returncode == 2 and "annotation file not found" in done.stderr, done.stderr
    # the fake is what a torch import meets: a command that needs torch fails on it
    done = run_cli("scaledet", "predict", str(config), "--checkpoint", str(config), "--vocab", "a", env=env, fresh=True)
    assert "torch was imported" in done.stderr
