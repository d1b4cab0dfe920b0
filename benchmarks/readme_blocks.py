"""Run every ``bash`` block of the README as written, against a real strategy report, and say which pass.

Each block runs in ``bash -euo pipefail`` inside a scratch folder of its own where ``strategies.parquet`` is the
report given (a symbolic link), with this checkout's ``.venv/bin`` first on ``PATH`` (so ``stratcastd`` and
``stratcast`` are the commands the Quick start installs) and the daemon's state and sockets in the scratch folder
(``XDG_STATE_HOME`` and ``XDG_RUNTIME_DIR``), so the default home the README uses is a fresh one and nothing of
the user's is touched. A block passes when it exits 0 within ``--timeout`` seconds; on a failure its output's
tail is printed. The Quick start block installs from scratch and runs the demo: it runs only with
``--quick-start`` (in a clean copy of the checkout, with ``git clone``).

    .venv/bin/python benchmarks/readme_blocks.py [--data REPORT] [--timeout 1800] [--quick-start] [--only N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT.parent / "shared" / "data" / "strategies" / "eurusd_2016_2019_weekly.parquet"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(readme: Path) -> list[str]:
    """The README's bash blocks, in order."""
    return [m.group(1) for m in BLOCK.finditer(readme.read_text())]


def environment(scratch: Path) -> dict[str, str]:
    """This checkout's commands first on PATH; the daemon's default home and sockets inside ``scratch``."""
    runtime = scratch / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATCAST_")}
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_STATE_HOME"] = str(scratch / "state")
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


def run_block(index: int, text: str, data: Path, timeout: float, quick_start: bool) -> bool:
    """Run one block in a scratch folder; print its verdict (and its output's tail when it fails)."""
    with tempfile.TemporaryDirectory(prefix=f"readme-{index}-") as tmp:
        scratch = Path(tmp)
        cwd = scratch
        if quick_start:  # the Quick start installs a checkout: give it a clean clone
            subprocess.run(["git", "clone", "-q", str(ROOT), str(scratch / "clone")], check=True)
            cwd = scratch / "clone"
        (cwd / "strategies.parquet").symlink_to(data)
        env = environment(scratch)
        if quick_start:
            env["PATH"] = env["PATH"].split(os.pathsep, 1)[1]  # the block must install its own commands
        started = time.monotonic()
        try:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", text],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            code, out = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out = 124, f"timed out after {timeout:.0f} s\n{_text(exc.stdout)}{_text(exc.stderr)}"
        finally:
            _stop_daemons(env)
        took = time.monotonic() - started
    first = text.strip().splitlines()[0]
    print(f"block {index}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {took:.0f} s: {first[:90]}")
    if code != 0:
        print("    " + "\n    ".join(out.strip().splitlines()[-25:]))
    return code == 0


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _stop_daemons(env: dict[str, str]) -> None:
    """A block that failed half-way may leave its daemon up: shut the scratch home's daemon down."""
    subprocess.run(
        [str(ROOT / ".venv" / "bin" / "stratcast"), "shutdown"],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPORT, help="the strategy report (default: the EURUSD report)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a block may take")
    parser.add_argument("--quick-start", action="store_true", help="also run the Quick start (installs from scratch)")
    parser.add_argument("--only", type=int, action="append", help="run only block N (1-based; repeatable)")
    args = parser.parse_args()
    if not args.data.is_file():
        parser.error(f"{args.data}: no such report; pass --data PATH")
    texts = blocks(ROOT / "README.md")
    results = []
    for i, text in enumerate(texts, start=1):
        quick_start = i == 1
        if (args.only and i not in args.only) or (quick_start and not args.quick_start and not args.only):
            continue
        results.append(run_block(i, text, args.data.resolve(), args.timeout, quick_start))
    print(f"{sum(results)} of {len(results)} blocks ran as written")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
