"""Crafted checkpoints must be refused without running their payload."""

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from fusevis.errors import ModelError
from fusevis.models import get_model, safe_load
from fusevis.models.safe_pickle import ModuleRecord, records_to_state_dict


class ShellPayload:
    """Unpickling this calls os.system(command)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (self.command,))


@pytest.mark.parametrize("zip_format", [True, False])
def test_shell_payload_is_refused_and_never_runs(tmp_path: Path, zip_format: bool) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"weight": torch.ones(2), "boom": ShellPayload(f"touch {marker}")}
    torch.save(payload, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(
        ModelError, match=r"refused to load: the checkpoint refers to (posix|os)\.system"
    ):
        safe_load(path)
    with pytest.raises(ModelError):
        get_model("DeepFuse", weights=path)
    assert not marker.exists()
    # the payload is real: unpickling it the unsafe way would have run the command
    assert "system" in str(pickle.dumps(ShellPayload("true")))


def test_eval_payload_in_plain_pickle_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class EvalPayload:
        def __reduce__(self):  # noqa: ANN204
            return (eval, (f"open({str(marker)!r}, 'w').close()",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(EvalPayload(), protocol=2))
    with pytest.raises(ModelError, match=r"(builtins|__builtin__)\.eval"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize("zip_format", [True, False])
def test_whole_pickled_module_becomes_records(tmp_path: Path, zip_format: bool) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    path = tmp_path / "whole.pth"
    torch.save(model, path, _use_new_zipfile_serialization=zip_format)
    record = safe_load(path)
    assert isinstance(record, ModuleRecord) and record.class_name == "Sequential"
    state = records_to_state_dict(record)
    assert list(state) == list(model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)


def test_truncated_legacy_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "cut.pth"
    torch.save(OrderedDict(w=torch.arange(1000.0)), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated"):
        safe_load(path)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(ModelError, match="not a readable PyTorch checkpoint"):
        get_model("DeepFuse", weights=path)
