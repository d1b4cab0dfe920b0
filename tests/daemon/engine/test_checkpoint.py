import pickle

import pytest
import torch

from stratcast.daemon.engine.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def test_checkpoint_round_trips_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"w": torch.arange(5.0), "step": 7, "names": ["a", "b"]})
    state = load_checkpoint(path)
    assert torch.equal(state["w"], torch.arange(5.0)) and state["step"] == 7 and state["names"] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.pt.json"]


def test_corrupt_checkpoint_is_detected_by_its_digest(tmp_path):
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"w": torch.zeros(100)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(path)


class Boom:
    def __reduce__(self):
        return (print, ("code ran",))


def test_loading_never_executes_code_from_the_file(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"schema": 1, "x": Boom()}, fh)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_checkpoint(path)
    assert "code ran" not in capsys.readouterr().out
