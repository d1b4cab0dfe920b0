import ast
from pathlib import Path

from stratcast.shared.runfiles import Outputs, RunFolder

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "shared" / "stratcast",
    ROOT / "daemon" / "stratcast",
    ROOT / "tui" / "stratcast",
    ROOT / "benchmarks",
]
NAMES_MODULE = ROOT / "shared" / "stratcast" / "shared" / "runfiles.py"
FILE_NAMES = {
    "job.json",
    "log.txt",
    "history.jsonl",
    "spec.json",
    "metrics.json",
    "summary.parquet",
    "forecast.parquet",
    "model.pt",
    "stratcast.db",
    "stratcastd.lock",
    "daemon.log",
    "memory-plans.json",
    "*.pt",
}
"""Names distinctive enough to find as any string literal."""
FOLDER_NAMES = {"checkpoints", "out", "runs", "sock", "control", "events"}
"""Names that are also ordinary words (dict keys, option names): found only where a path is joined with them."""


def test_a_run_folder_names_its_files_as_they_lie_on_disk(tmp_path):
    run = RunFolder(tmp_path)
    assert (run.job, run.log, run.history) == (tmp_path / "job.json", tmp_path / "log.txt", tmp_path / "history.jsonl")
    assert (run.spec, run.checkpoints) == (tmp_path / "spec.json", tmp_path / "checkpoints")
    assert run.out == Outputs(tmp_path / "out")
    out = run.out
    assert out.metrics == tmp_path / "out" / "metrics.json"
    assert (out.summary, out.forecast) == (tmp_path / "out" / "summary.parquet", tmp_path / "out" / "forecast.parquet")
    assert out.model == tmp_path / "out" / "model.pt"


def test_checkpoint_files_are_the_pt_files_of_the_checkpoints_folder_in_name_order(tmp_path):
    run = RunFolder(tmp_path)
    assert run.checkpoint_files() == [] and not run.has_checkpoint()
    run.checkpoints.mkdir()
    for name in ("step-00000020.pt", "step-00000010.pt", "step-00000010.pt.json"):
        (run.checkpoints / name).write_text("x")
    assert run.checkpoint_files() == [run.checkpoints / "step-00000010.pt", run.checkpoints / "step-00000020.pt"]
    assert run.has_checkpoint()


def _spelling(node: ast.AST) -> str | None:
    """The name ``node`` spells, if any: a file name as a literal, a folder name joined to a path or assigned."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        name = node.value.rsplit("/", 1)[-1]
        return node.value if name in FILE_NAMES else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.right, ast.Constant):
        return f"/ {node.right.value!r}" if node.right.value in FOLDER_NAMES else None
    if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
        return f"= {node.value.value!r}" if node.value.value in FOLDER_NAMES else None
    return None


def _spelled_names(path: Path) -> list[str]:
    """Where ``path`` spells a run-folder or home name: ``line: name`` for each."""
    tree = ast.parse(path.read_text(), str(path))
    return [f"{getattr(node, 'lineno', 0)}: {name}" for node in ast.walk(tree) if (name := _spelling(node))]


def test_no_source_file_but_runfiles_spells_a_run_folder_or_home_name():
    spelled = {
        str(path.relative_to(ROOT)): names
        for root in SOURCES
        for path in sorted(root.rglob("*.py"))
        if not any(part.startswith(".") for part in path.relative_to(ROOT).parts)  # virtual envs, caches
        and path != NAMES_MODULE
        and (names := _spelled_names(path))
    }
    assert spelled == {}
