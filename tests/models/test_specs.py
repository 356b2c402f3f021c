"""Models named by command-line options: pairing, conventions, loading, parts, names."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fusevis.errors import FuseVisError, InputError, ModelError
from fusevis.io.image import Image
from fusevis.models import Adapter, Assembled, display_name
from fusevis.models.adapter import Loading
from fusevis.models.specs import (
    ModelSpec,
    build_model,
    check_loaded,
    choose_loading,
    load_named_models,
    model_specs,
)

USER_CODE = '''
import torch
from torch import nn


class AutoEncoder(nn.Module):
    """An auto-encoder whose test script calls encode, a rule, then decode."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(1, 3, 3, padding=1)
        self.up = nn.Conv2d(3, 1, 3, padding=1)

    def encode(self, x):
        return torch.relu(self.down(x))

    def decode(self, f):
        return self.up(f)


def halves(a, b):
    return 0.5 * a + 0.5 * b


class NotAModule:
    pass


class Named(nn.Module):
    display_name = "Declared"

    def forward(self, a, b):
        return a - b
'''


@pytest.fixture()
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "repo_net.py"
    path.write_text(USER_CODE)
    return path


def test_options_pair_by_position_and_parts_follow_models() -> None:
    specs = model_specs(
        ["DeepFuse", "WeightedAverage", "net.py:Net"],
        weights=["w.pth"],
        adapt=["scale=x/255;inputs=concat", ""],
        names=["first"],
        parts=["encoder=net.py:AE.encode,decoder=net.py:AE.decode"],
        rules=["l1-norm"],
    )
    assert [s.model for s in specs] == ["DeepFuse", "WeightedAverage", "net.py:Net", None]
    assert [s.weights for s in specs] == ["w.pth", None, None, None]
    assert specs[0].conventions is not None and specs[0].conventions.scale == "x/255"
    assert specs[1].conventions is None  # --adapt "" keeps the defaults
    assert [s.name for s in specs] == ["first", None, None, None]
    assert specs[3].parts == (("encoder", "net.py:AE.encode"), ("decoder", "net.py:AE.decode"))
    assert specs[3].rule == "l1-norm" and specs[3].label == "AE"
    assert [s.label for s in specs[:3]] == ["first", "WeightedAverage", "Net"]
    weighted = model_specs(["DeepFuse"], ["w"], parts=["encoder=a:E,decoder=a:D"], rules=["max"])
    assert weighted[1].weights is None
    assert pickle.loads(pickle.dumps(specs)) == specs  # analyze ships them to workers


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"models": []}, "name at least one --model"),
        ({"models": ["A"], "weights": ["x", "y"]}, "2 --weights for 1 model"),
        ({"models": ["A"], "adapt": ["", ""]}, "2 --adapt for 1 model"),
        ({"models": ["A"], "names": ["a", "b"]}, "2 --name for 1 model"),
        ({"models": ["A"], "names": ["  "]}, "--name must not be empty"),
        ({"models": ["A"], "rules": ["max"]}, "1 --rule for 0 --parts"),
        ({"models": [], "parts": ["encoder=a:E,decoder=a:D"]}, "needs a --rule"),
        ({"models": [], "parts": ["encoder=a:E"], "rules": ["max"]}, "no decoder"),
        ({"models": [], "parts": ["coder=a:E,decoder=a:D"], "rules": ["max"]}, "unknown part"),
        ({"models": [], "parts": ["encoder a:E"], "rules": ["max"]}, "should read ROLE=SPEC"),
        (
            {"models": [], "parts": ["encoder=a:E,encoder=b:E,decoder=a:D"], "rules": ["max"]},
            "encoder given twice",
        ),
        ({"models": ["A"], "adapt": ["scale=x*255"]}, "scale 'x*255' is not unit"),
        ({"models": ["A"], "adapt": ["colour=ycbcr"]}, "unknown convention 'colour'"),
        ({"models": ["A"], "adapt": ["channels"]}, "should read KEY=VALUE"),
    ],
)
def test_bad_options_are_one_line(options: dict, fragment: str) -> None:
    with pytest.raises(FuseVisError) as caught:
        model_specs(**options)
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_loading_follows_the_conventions() -> None:
    def specs(*adapts: str) -> list[ModelSpec]:
        return model_specs(["A"] * len(adapts), adapt=list(adapts))

    assert choose_loading(specs("")) == Loading("minmax", "gray")
    assert choose_loading(specs("scale=x/255")) == Loading("none", "gray")
    assert choose_loading(specs("scale=x/255;color=ycbcr")) == Loading("none", "ycbcr")
    assert choose_loading(specs("scale=x/255"), color=None) == Loading("none", "gray")
    assert choose_loading(specs("mean_std=signed"), "percentile") == Loading("percentile", "gray")
    # both models accept images loaded as the user says
    assert choose_loading(specs("scale=x/255", ""), "none") == Loading("none", "gray")
    with pytest.raises(ModelError, match=r"^A: scale x/255 needs the images loaded with normalize"):
        choose_loading(specs("scale=x/255"), "minmax")
    with pytest.raises(ModelError, match="needs the images loaded with color gray, not ycbcr"):
        choose_loading(specs("scale=x/255"), color="ycbcr")
    with pytest.raises(ModelError, match="different loading .*normalize none.*normalize minmax"):
        choose_loading(specs("scale=x/255", ""))


def test_display_names_given_kept_derived_numbered(user_file: Path) -> None:
    models = load_named_models(["WeightedAverage"] * 3, names=["WeightedAverage"])
    assert list(models) == ["WeightedAverage", "WeightedAverage-2", "WeightedAverage-3"]
    models = load_named_models(["WeightedAverage", "WeightedAverage"], adapt=["", "name=Mine"])
    assert list(models) == ["WeightedAverage", "Mine"]
    assert display_name(models["Mine"]) == "Mine"
    assert not isinstance(models["Mine"], Adapter)  # a name alone needs no adapter
    models = load_named_models([f"{user_file}:Named", "WeightedAverage"], names=["N", "My avg"])
    assert list(models) == ["N", "My avg"] and display_name(models["My avg"]) == "My avg"
    assert list(load_named_models([f"{user_file}:Named"])) == ["Declared"]
    with pytest.raises(InputError, match="two models are named 'X'"):
        load_named_models(["WeightedAverage", "WeightedAverage"], names=["X", "X"])


def test_parts_of_one_network_share_it_and_load_from_one_file(
    user_file: Path, tmp_path: Path
) -> None:
    torch.manual_seed(3)
    reference = build_model(ModelSpec(f"{user_file}:AutoEncoder"))
    torch.save(reference.state_dict(), tmp_path / "ae.pth")
    (spec,) = model_specs(
        [],
        weights=[f"network={tmp_path / 'ae.pth'}"],
        parts=[f"encoder={user_file}:AutoEncoder.encode,decoder={user_file}:AutoEncoder.decode"],
        rules=["max"],
    )
    model = build_model(spec, num_inputs=3)
    assert isinstance(model, Assembled) and model.num_inputs == 3
    assert [name for name, _ in model.named_children()] == ["network", "rule"]
    x = [torch.rand(1, 1, 9, 7) for _ in range(3)]
    features = [reference.encode(xi) for xi in x]
    expected = reference.decode(torch.maximum(torch.maximum(features[0], features[1]), features[2]))
    torch.testing.assert_close(model(*x), expected)
    assert spec.label == "AutoEncoder" and display_name(model) == "AutoEncoder"


def test_rule_from_a_file_and_bad_rules(user_file: Path) -> None:
    torch.manual_seed(0)
    parts = f"encoder={user_file}:AutoEncoder.encode,decoder={user_file}:AutoEncoder.decode"
    (own,) = model_specs([], parts=[parts], rules=[f"{user_file}:halves"])
    (mean,) = model_specs([], parts=[parts], rules=["mean"])
    mine, theirs = build_model(own), build_model(mean)
    theirs.load_state_dict(mine.state_dict())
    x = [torch.rand(1, 1, 6, 6) for _ in range(2)]
    torch.testing.assert_close(mine(*x), theirs(*x))
    for rule, fragment in [
        ("median", "fusion rule 'median' is not one of mean, sum, max"),
        (f"{user_file}:NotAModule", "is a class but not a torch.nn.Module"),
        (f"{user_file}:nothing", "has no attribute 'nothing'"),
    ]:
        (spec,) = model_specs([], parts=[parts], rules=[rule])
        with pytest.raises(ModelError, match=fragment):
            build_model(spec)
    (spec,) = model_specs(
        [], parts=[f"encoder={user_file}:AutoEncoder.enc,decoder=x.py:D"], rules=["max"]
    )
    with pytest.raises(ModelError, match="encoder .*AutoEncoder has no attribute 'enc'"):
        build_model(spec)


def test_adapter_built_for_the_number_of_inputs(user_file: Path) -> None:
    (spec,) = model_specs([f"{user_file}:Named"], adapt=["inputs=separate;post=clamp"])
    model = build_model(spec, num_inputs=2)
    assert isinstance(model, Adapter) and model.num_inputs == 2
    a, b = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    torch.testing.assert_close(model(a, b), torch.clamp(a - b, 0, 1))
    with pytest.raises(ModelError, match="fuses 2 inputs, got 3"):
        model(a, b, b)


def test_images_loaded_the_wrong_way_are_refused() -> None:
    models = {"x": Adapter(nn.Identity(), scale="x/255", num_inputs=1)}
    scaled = Image(np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4), "ir.png", (0.0, 255.0))
    with pytest.raises(InputError, match="ir.png: values lie in .*load with normalize none"):
        check_loaded(models, [scaled])
    raw = Image(np.linspace(0, 255, 16, dtype=np.float32).reshape(4, 4), "ir.png", (0.0, 255.0))
    check_loaded(models, [raw])
    check_loaded({"plain": nn.Identity()}, [scaled])
