"""The pure model imports no Redis, Flask, rq, os or clock: time comes in as data."""

import ast
from pathlib import Path

import slotlock.model

MODEL_DIR = Path(slotlock.model.__file__).parent
FORBIDDEN_MODULES = {"redis", "flask", "rq", "os", "time", "random", "secrets", "socket",
                     "subprocess", "uuid", "gunicorn", "werkzeug", "fakeredis"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}
CLOCK_OWNERS = {"datetime", "date", "time", "dt"}


def model_sources():
    files = sorted(MODEL_DIR.glob("*.py"))
    assert len(files) >= 5, "the model package moved?"
    return files


def test_model_imports_no_infrastructure():
    offenders = []
    for path in model_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_MODULES:
                    offenders.append(f"{path.name}:{node.lineno} imports {name}")
    assert offenders == []


def test_model_never_reads_the_clock():
    offenders = []
    for path in model_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in CLOCK_CALLS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in CLOCK_OWNERS):
                offenders.append(f"{path.name}:{node.lineno} calls .{node.func.attr}()")
    assert offenders == []


def test_purity_check_would_catch_an_offender(tmp_path):
    bad = "import os\nfrom redis import Redis\nx = datetime.now()\n"
    tree = ast.parse(bad)
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert len(imports) == 2 and calls[0].func.attr == "now"
