"""Handlers and dispatch see the daemon through ``DaemonContext``, never through ``server``'s class."""

import ast
from pathlib import Path

import stratcast.daemon.dispatch as dispatch

DAEMON = Path(dispatch.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top, in functions or under ``TYPE_CHECKING``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_handler_and_not_dispatch_imports_the_server_module():
    files = [DAEMON / "dispatch.py", *sorted((DAEMON / "handlers").glob("*.py"))]
    assert len(files) > 20  # every handler file is found, not an empty folder
    server = {f.name: sorted(m for m in imported_modules(f) if m.startswith("stratcast.daemon.server")) for f in files}
    assert {name: modules for name, modules in server.items() if modules} == {}
