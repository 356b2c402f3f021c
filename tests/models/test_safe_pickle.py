"""Crafted checkpoints must be refused without running their payload."""

import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from fusevis.errors import ModelError
from fusevis.models import get_model, safe_load
from fusevis.models.safe_pickle import MetadataRecord, ModuleRecord, records_to_state_dict


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


def crafted(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "crafted.pt"
    path.write_bytes(b"\x80\x02" + body + b".")
    return path


def test_a_class_called_with_arguments_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"touch {marker}".encode()
    argv = b"]" + b"(" + b"X" + len(text).to_bytes(4, "little") + text + b"e"
    path = crafted(tmp_path, b"csubprocess\nPopen\n" + argv + b"\x85R")
    with pytest.raises(ModelError, match=r"refused to load: the checkpoint calls subprocess.Popen"):
        safe_load(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"cbuiltins\ngetattr\n", r"refers to builtins\.getattr"),
        (b"c_codecs\nencode\nX\x01\x00\x00\x00aX\x05\x00\x00\x00rot13\x86R", "bytes encoded"),
        (b"]}b", "pickled state for a list"),
        (b"ctorch\nFloatStorage\n)\x81", "refused to create an object"),
        (b"]K\x01K\x02s", "item assignment to a list"),
        (b"\x96\x00\x00\x00\x00\x00\x00\x01\x00", "no checkpoint needs"),  # BYTEARRAY8, 2^56
    ],
)
def test_operations_outside_a_checkpoint_are_refused(
    tmp_path: Path, body: bytes, problem: str
) -> None:
    with pytest.raises(ModelError, match=problem):
        safe_load(crafted(tmp_path, body))


def test_safe_load_keeps_within_its_budget(tmp_path: Path) -> None:
    path = tmp_path / "expanded.pth"
    torch.save({"w": torch.zeros(1).expand(20_000, 20_000)}, path)  # 1.6 GB as a tensor
    with pytest.raises(ModelError, match=r"its tensors hold 1,600,000,000 bytes, more than"):
        safe_load(path)
    assert safe_load(path, max_bytes=2_000_000_000)["w"].stride() == (0, 0)


def test_numpy_values_are_kept_inert(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"w": torch.ones(2), "psnr": np.float64(31.5), "epoch": np.int64(4)}, path)
    loaded = safe_load(path)
    assert isinstance(loaded["psnr"], MetadataRecord) and loaded["psnr"].item() == 31.5
    assert loaded["epoch"].item() == 4 and torch.equal(loaded["w"], torch.ones(2))


class _Storage:
    def __init__(self, key: str, numel: int, view: tuple | None = None) -> None:
        self.key, self.numel, self.view = key, numel, view


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):  # noqa: ANN204
        return (torch._utils._rebuild_tensor_v2, self.args)


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):  # noqa: ANN001, ANN201
        if isinstance(obj, _Storage):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel, obj.view)
        return None


def legacy_file(path: Path, obj: object, storages: dict[str, np.ndarray]) -> Path:
    """PyTorch's legacy layout: magic, protocol, sys info, the object, keys, then storages."""
    import io as _io

    out = _io.BytesIO()
    for head in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(head, out, protocol=2)
    _LegacyPickler(out, protocol=2).dump(obj)
    pickle.dump(list(storages), out, protocol=2)
    for data in storages.values():
        out.write(len(data).to_bytes(8, "little") + data.astype("<f4").tobytes())
    path.write_bytes(out.getvalue())
    return path


def test_legacy_storage_views_are_read_from_their_base(tmp_path: Path) -> None:
    base = _Storage("0", 10)
    view = _Storage("0", 10, ("7", 4, 6))  # elements 4..9 of storage 0, seen as storage 7
    data = np.arange(10, dtype=np.float32)
    path = legacy_file(
        tmp_path / "views.pth",
        {"a": _Tensor(base, 1, (2,), (1,)), "b": _Tensor(view, 2, (2, 2), (1, 2))},
        {"0": data},
    )
    loaded = safe_load(path)
    assert loaded["a"].tolist() == [1.0, 2.0]
    assert loaded["b"].tolist() == [[6.0, 8.0], [7.0, 9.0]]


def test_legacy_storage_header_must_match_its_record(tmp_path: Path) -> None:
    path = legacy_file(
        tmp_path / "lie.pth", {"a": _Tensor(_Storage("0", 4), 0, (4,), (1,))}, {"0": np.zeros(9)}
    )
    with pytest.raises(ModelError, match="storage 0 holds 9 elements, its record says 4"):
        safe_load(path)
