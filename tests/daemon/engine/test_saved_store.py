"""Saved models' store: immutable versions, moving aliases, export/import, tampering refused, no pickle anywhere."""

import hashlib
import json
import pickle
import struct

import pandas as pd
import pytest
import torch

from stratcast.daemon.engine.data.synthetic import make_strategy_panel
from stratcast.daemon.engine.run.job import run_job
from stratcast.daemon.engine.saved.score import score
from stratcast.daemon.engine.saved.store import (
    SavedModelError,
    list_models,
    parse_ref,
    remove_version,
    resolve,
    set_alias,
)
from stratcast.daemon.engine.saved.versions import export_version, import_version, load_saved, save_run
from stratcast.daemon.engine.spec.runspec import build_spec
from stratcast.shared.runfiles import Outputs

SETS = ["max_steps=8", "batch_size=32", "val_check_steps=4", "hidden_size=8", "num_layers=1"]


def quiet(line: str) -> None:
    pass


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished small MLP run: (its data file, its output folder)."""
    root = tmp_path_factory.mktemp("run")
    data = root / "panel.parquet"
    make_strategy_panel(6, 40, seed=3).to_parquet(data, index=False)
    spec = build_spec(
        data=str(data), model="mlp", out=str(root / "out"), device="cpu", horizon=4, input_size=8, holdout=4,
        sets=SETS,
    )  # fmt: skip
    run_job(spec, log=quiet)
    return data, root / "out"


def test_saving_twice_gives_two_versions_and_the_first_is_unchanged(tmp_path, run):
    home = tmp_path / "home"
    first = save_run(home, run[1], "weekly")
    files = {p.name: p.read_bytes() for p in first.path.iterdir()}
    second = save_run(home, run[1], "weekly")
    assert (first.version, second.version) == (1, 2)
    assert {p.name: p.read_bytes() for p in first.path.iterdir()} == files
    assert sorted(files) == ["manifest.json", "weights.safetensors"]
    assert resolve(home, "weekly").version == 2 and resolve(home, "weekly:1").version == 1
    assert [p.name for p in (home / "models" / "weekly").iterdir() if p.name.startswith(".")] == []
    (listed,) = list_models(home)
    summary = listed.pop("summary")
    assert listed == {"name": "weekly", "versions": [1, 2], "latest": 2, "aliases": {}}
    assert summary["created"] == json.loads(second.manifest.read_text())["created"]  # the latest's
    second.manifest.write_text("{not json")
    assert list_models(home)[0]["summary"] is None  # unreadable: listed all the same, `saved show` says why


def test_aliases_move_and_an_aliased_version_is_not_removed(tmp_path, run):
    home = tmp_path / "home"
    save_run(home, run[1], "weekly")
    save_run(home, run[1], "weekly")
    set_alias(home, "weekly:1", "champion")
    assert resolve(home, "weekly@champion").version == 1
    set_alias(home, "weekly:2", "champion")
    assert resolve(home, "weekly@champion").version == 2
    with pytest.raises(SavedModelError, match="champion"):
        remove_version(home, "weekly:2")
    remove_version(home, "weekly:1")
    assert [m["versions"] for m in list_models(home)] == [[2]]
    remove_version(home, "weekly:2", force=True)
    assert list_models(home) == []
    with pytest.raises(SavedModelError, match="no saved model"):
        resolve(home, "weekly@champion")


@pytest.mark.parametrize("bad", ["../x", "a/b", ".hidden", "", "x@", "x:0", "x:one"])
def test_names_and_references_are_checked(bad):
    with pytest.raises(SavedModelError):
        parse_ref(bad)


def test_export_then_import_into_another_home_reproduces_the_forecast(tmp_path, run):
    data, out = run
    save_run(tmp_path / "a", out, "weekly")
    export_version(tmp_path / "a", "weekly", tmp_path / "weekly.tar")
    imported = import_version(tmp_path / "b", tmp_path / "weekly.tar", name="copy")
    assert imported.ref == "copy:1"
    score(load_saved(tmp_path / "b", "copy"), data, tmp_path / "scored", log=quiet)
    scored = pd.read_parquet(Outputs(tmp_path / "scored").forecast)
    original = pd.read_parquet(Outputs(out).forecast)
    pd.testing.assert_frame_equal(scored, original, rtol=1e-6)


def test_an_import_with_other_entries_is_refused(tmp_path, run):
    import tarfile

    with tarfile.open(tmp_path / "evil.tar", "w") as tar:
        tar.add(run[1] / "metrics.json", arcname="../metrics.json")
    with pytest.raises(SavedModelError, match="unexpected entry"):
        import_version(tmp_path / "home", tmp_path / "evil.tar")
    assert not (tmp_path / "home" / "models").exists()


def edit_manifest(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.update(surprise=1), "unknown field `surprise`"),
        (lambda m: m["data"].update(horizon="4"), r"Expected `int`, got `str` - at `\$.data.horizon`"),
        (lambda m: (m.update(model="nosuch"), m["spec"].update(model="nosuch")), "nosuch"),
        (lambda m: m["spec"]["train"].update(input_size=0), "input_size"),
        (lambda m: m.update(weights_sha256="0" * 64), "sha256"),
        (lambda m: m.pop("strategies"), "missing required field `strategies`"),
    ],
)
def test_a_tampered_manifest_is_refused_with_a_named_error(tmp_path, run, change, message):
    version = save_run(tmp_path / "home", run[1], "weekly")
    edit_manifest(version.manifest, change)
    with pytest.raises(SavedModelError, match=message) as err:
        load_saved(tmp_path / "home", "weekly")
    assert "manifest.json" in str(err.value) or "weights.safetensors" in str(err.value)


def test_a_flipped_byte_in_the_weights_is_refused(tmp_path, run):
    version = save_run(tmp_path / "home", run[1], "weekly")
    raw = bytearray(version.weights.read_bytes())
    raw[-3] ^= 0x01
    version.weights.write_bytes(bytes(raw))
    with pytest.raises(SavedModelError, match=r"weights.safetensors: its sha256 .* differs"):
        load_saved(tmp_path / "home", "weekly")


def test_weights_that_match_their_digest_but_not_the_model_are_refused(tmp_path, run):
    from safetensors.torch import load, save

    version = save_run(tmp_path / "home", run[1], "weekly")
    tensors = load(version.weights.read_bytes())
    key = next(k for k in tensors if k.startswith("member.0."))
    tensors[key] = torch.zeros(3)
    blob = save(tensors)
    version.weights.write_bytes(blob)
    edit_manifest(version.manifest, lambda m: m.update(weights_sha256=hashlib.sha256(blob).hexdigest()))
    with pytest.raises(SavedModelError, match="do not fit mlp"):
        load_saved(tmp_path / "home", "weekly")


def test_a_saved_model_holds_no_pickle_and_loads_and_scores_without_one(tmp_path, run, monkeypatch):
    version = save_run(tmp_path / "home", run[1], "weekly")
    weights, manifest = version.weights.read_bytes(), version.manifest.read_bytes()
    for raw in (weights, manifest):
        assert not raw.startswith(b"PK\x03\x04")  # torch.save's zip archive
        assert not any(raw.startswith(bytes([0x80, p])) for p in range(2, 6))  # a pickle's PROTO opcode
        assert b"\x80\x04\x95" not in raw and b"\x80\x02c" not in raw
    (length,) = struct.unpack("<Q", weights[:8])  # safetensors: header length, JSON header, raw tensors
    header = json.loads(weights[8 : 8 + length])
    assert header["__metadata__"]["format"] == "stratcast-saved-model"
    json.loads(manifest)

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling while loading or scoring a saved model")

    for module, name in ((pickle, "loads"), (pickle, "load"), (torch, "load")):
        monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    saved = load_saved(tmp_path / "home", "weekly")
    score(saved, run[0], tmp_path / "scored", log=quiet)
    assert Outputs(tmp_path / "scored").forecast.exists()


def test_a_write_that_fails_leaves_no_half_version(tmp_path, run):
    from stratcast.daemon.engine.saved.store import write_version

    save_run(tmp_path / "home", run[1], "weekly")

    def crash(folder):
        (folder / "weights.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_version(tmp_path / "home", "weekly", crash)
    assert sorted(p.name for p in (tmp_path / "home" / "models" / "weekly").iterdir()) == ["1"]
    assert save_run(tmp_path / "home", run[1], "weekly").version == 2
