"""engine/ is a plain library: it never imports textual or rich (nor tui), statically or at run time; its layers
import downwards only (the contracts in pyproject.toml), and no module imports itself round a circle."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_import_linter_contract_holds():
    runner = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    done = subprocess.run([sys.executable, "-c", runner, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_no_module_imports_itself_round_a_circle():
    """Type-checking imports count: a circle there is a circle in the design (events once named SearchResult from
    search, which imported every strategy, which imported events)."""
    import grimp

    graph = grimp.build_graph("engine", "tui")
    circles = [sorted(group) for group in _strongly_connected(graph) if len(group) > 1]
    assert not circles, circles


def _strongly_connected(graph) -> list[set[str]]:
    """Tarjan's algorithm over the modules' direct imports."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = set()
            while (member := stack.pop()) != module:
                on_stack.discard(member)
                group.add(member)
            on_stack.discard(module)
            groups.append(group | {module})

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_importing_every_engine_module_loads_no_ui_library():
    """No textual and no tui ever. rich arrives with httpx, whose command-line tool it draws (httpx imports its
    `_main` when rich is installed); the openai SDK needs httpx. So rich is allowed only with httpx's `_main`, and
    the import-linter contract keeps engine's own imports free of it."""
    code = (
        "import pkgutil, importlib, sys, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'tui'))\n"
        "if 'rich' in sys.modules and 'httpx._main' not in sys.modules:\n"
        "    bad.append('rich, without httpx to bring it')\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_engine_module_imports_alone_in_a_fresh_interpreter():
    """A cycle (say backends/__init__ -> request_layer -> backends) only shows when a module is imported first."""
    import pkgutil
    from concurrent.futures import ThreadPoolExecutor

    import engine

    names = ["engine"] + [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]

    def alone(name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:  # two interpreters at a time: half the wall time on two cores
        done = dict(zip(names, pool.map(alone, names), strict=True))
    failed = {name: run.stderr.strip().splitlines()[-1] for name, run in done.items() if run.returncode}
    assert len(names) > 30 and not failed, failed


def test_a_remote_backends_tokenizer_loads_llama_cpps_bindings_alone_and_the_package_still_completes():
    """The openai backend's local tokenizer needs llama.cpp's ctypes bindings, not the package's high-level
    classes (0.2 s of start-up); whoever imports `llama_cpp` afterwards must still get all of it."""
    code = (
        "import sys\n"
        "from engine.backends.tokenizers import load_tokenizer\n"
        "assert load_tokenizer('embedded').encode('hi')\n"
        "assert 'llama_cpp.llama' not in sys.modules and 'numpy' not in sys.modules, 'high-level package loaded'\n"
        "import llama_cpp\n"
        "from llama_cpp import Llama\n"
        "assert llama_cpp.Llama is Llama and llama_cpp.llama_cpp is sys.modules['llama_cpp.llama_cpp']\n"
        "assert llama_cpp.__version__\n"
        "try:\n"
        "    llama_cpp.no_such_name\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('a missing name resolved')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_openai_backend_speaks_through_the_sdk_and_the_local_dashboard_never_imports_it():
    """The SDK's import is 1.1 s: only the openai backend pays it."""
    code = ("import sys, tui.app, engine.backends.local.backend, engine.backends.factory\n"
            "assert 'openai' not in sys.modules\n"
            "import engine.backends.openai_compat\n"
            "assert 'openai' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
