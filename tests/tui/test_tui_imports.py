import subprocess
import sys
from pathlib import Path

import stratcast.tui

TUI_ROOT = Path(next(iter(stratcast.tui.__path__)))


def tui_modules() -> list[str]:
    """Every module of the client and the terminal UI (screens and widgets included)."""
    names = [
        "stratcast.tui." + ".".join(path.relative_to(TUI_ROOT).with_suffix("").parts) for path in TUI_ROOT.rglob("*.py")
    ]
    return sorted({*names, "stratcast.shared.report", "stratcast.shared.errors", "stratcast.shared.aclient"})


def test_the_tui_has_screens_and_widgets_to_check():
    modules = tui_modules()
    assert "stratcast.tui.app" in modules
    assert any(".screens." in m for m in modules) and any(".widgets." in m for m in modules)


def test_the_client_and_the_tui_never_import_torch_or_numpy():
    code = (
        "import importlib, sys\n"
        f"for name in {tui_modules()!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in ('torch', 'numpy', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
