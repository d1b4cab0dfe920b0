import subprocess
import sys


def test_the_client_never_imports_torch():
    code = (
        "import sys, stratcast.tui.cli, stratcast.shared.report, stratcast.shared.errors; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
