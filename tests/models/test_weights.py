from pathlib import Path

import pytest
import torch

from fusevis.errors import ModelError
from fusevis.models import DeepFuse, get_model, load_state, read_metadata, save_weights


def test_safetensors_round_trip_with_metadata(tmp_path: Path) -> None:
    model = DeepFuse()
    path = save_weights(model, tmp_path / "w.safetensors", {"model": "DeepFuse", "epochs": 3})
    state, meta = load_state(path)
    assert meta["epochs"] == 3 and len(meta["sha256"]) == 64
    assert read_metadata(path) == meta
    loaded = get_model("DeepFuse", weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_corrupted_safetensors_digest_is_detected(tmp_path: Path) -> None:
    model = DeepFuse()
    path = save_weights(model, tmp_path / "w.safetensors", {"model": "DeepFuse"})
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelError, match="tensor digest does not match"):
        load_state(path)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_plain_state_dict_pickle(tmp_path: Path, prefix: str) -> None:
    model = DeepFuse()
    path = tmp_path / "state.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    loaded = get_model("DeepFuse", weights=path)
    assert torch.equal(loaded.layer1.main[0].weight, model.layer1.main[0].weight)


def test_mismatched_architecture_lists_names(tmp_path: Path) -> None:
    path = tmp_path / "state.pth"
    torch.save(DeepFuse().state_dict(), path)
    with pytest.raises(ModelError) as error:
        get_model("MaskNet", weights=path)
    message = str(error.value)
    assert "weights do not fit MaskNet" in message
    assert "missing: layer1.0.weight" in message
    assert "unexpected: layer1.main.0.weight" in message


def test_wrong_shapes_are_listed(tmp_path: Path) -> None:
    state = DeepFuse().state_dict()
    state["layer4.main.0.weight"] = torch.zeros(32, 32, 5, 5)
    path = tmp_path / "state.pth"
    torch.save(state, path)
    with pytest.raises(ModelError, match=r"wrong shape: layer4.main.0.weight \(32, 32, 5, 5\)"):
        get_model("DeepFuse", weights=path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights file not found"):
        get_model("DeepFuse", weights=tmp_path / "nope.safetensors")
