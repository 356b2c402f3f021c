"""A fusion model assembled from parts: an encoder, a fusion rule and a decoder.

Many fusion repositories (DenseFuse, NestFuse, RFN-Nest and their successors) train an
auto-encoder and fuse at test time in feature space, calling the parts one after the
other::

    features_k = encoder(x_k)            # for every input k
    fused = rule(features_1, ..., features_N)
    output = decoder(fused)

:class:`Assembled` is that composition as one ``nn.Module`` with ``forward(x_1, ..., x_N)``,
so FuseVis can take its Jacobian like any other model's. A part may be a module, a bound
method of a module (``net.encoder``, ``net.decoder_eval``) or a plain function; modules
(and the owners of bound methods) are registered as sub-modules, so ``.to()``,
``.double()`` and ``part=FILE`` weights reach them. An encoder that returns several
feature maps (a list or tuple, one per scale) gets the rule applied scale by scale.

The rules written here use only local, element-wise operations and reductions over the
channels, so they trace with ``torch.fx`` and keep the model local.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from fusevis.errors import ModelError
from fusevis.models.adapter import display_name
from fusevis.models.arity import with_inputs

__all__ = ["RULES", "Assembled", "L1Norm", "Max", "Mean", "Sum", "make_rule"]


def _total(values: Sequence[torch.Tensor]) -> torch.Tensor:
    result = values[0]
    for value in values[1:]:
        result = result + value
    return result


class Mean(nn.Module):
    """The mean of the inputs' features, (f_1 + ... + f_N) / N."""

    def forward(self, *features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _total(features) / len(features)


class Sum(nn.Module):
    """The sum of the inputs' features (DenseFuse's "addition" strategy)."""

    def forward(self, *features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return _total(features)


class Max(nn.Module):
    """The element-wise maximum of the inputs' features (IFCNN's rule)."""

    def forward(self, *features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        result = features[0]
        for feature in features[1:]:
            result = torch.maximum(result, feature)
        return result


class L1Norm(nn.Module):
    """Features weighted per pixel by their l1-norm activity (DenseFuse, NestFuse).

    The activity of input k is a_k = Σ_c |f_k,c| over the channels, optionally averaged
    over a ``window`` × ``window`` block (DenseFuse's block average, zero padding not
    counted); the weights are w_k = a_k / (Σ_j a_j + eps) (``"ratio"``) or
    w_k = exp(a_k) / Σ_j exp(a_j) (``"softmax"``, computed with the maximum subtracted);
    the fused features are Σ_k w_k f_k.

    Parameters
    ----------
    weights : {"ratio", "softmax"}
        How activities become weights.
    window : int
        Odd block size of the activity average (1: none).
    eps : float
        Added to the ratio's denominator (1e-5 as DenseFuse's PyTorch code), so that
        pixels where every feature is zero fuse to zero instead of NaN.
    """

    def __init__(self, weights: str = "ratio", window: int = 1, eps: float = 1e-5) -> None:
        super().__init__()
        if weights not in ("ratio", "softmax"):
            raise ModelError(f"l1-norm weights {weights!r} is not ratio or softmax")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
            raise ModelError(f"l1-norm window must be an odd whole number, not {window!r}")
        self.weights = weights
        self.eps = float(eps)
        self.average = (
            nn.AvgPool2d(window, stride=1, padding=window // 2, count_include_pad=False)
            if window > 1
            else None
        )

    def extra_repr(self) -> str:  # noqa: D102
        return f"weights={self.weights!r}, eps={self.eps:g}"

    def forward(self, *features: torch.Tensor) -> torch.Tensor:  # noqa: D102
        activity = [feature.abs().sum(dim=1, keepdim=True) for feature in features]
        if self.average is not None:
            activity = [self.average(a) for a in activity]
        if self.weights == "ratio":
            total = _total(activity) + self.eps
            weights = [a / total for a in activity]
        else:
            top = activity[0]
            for a in activity[1:]:
                top = torch.maximum(top, a)
            exps = [torch.exp(a - top) for a in activity]
            total = _total(exps)
            weights = [e / total for e in exps]
        return _total([w * f for w, f in zip(weights, features, strict=True)])


RULES: dict[str, Callable[[], nn.Module]] = {
    "mean": Mean,
    "sum": Sum,
    "max": Max,
    "l1-norm": lambda: L1Norm("ratio"),
    "l1-softmax": lambda: L1Norm("softmax"),
}
"""Named fusion rules: ``l1-norm`` (ratio weights) and ``l1-softmax`` (softmax weights)."""


def make_rule(rule: str | nn.Module | Callable[..., torch.Tensor]) -> nn.Module | Callable:
    """A fusion rule from a name in :data:`RULES`, a module or a callable ``rule(*features)``."""
    if isinstance(rule, str):
        if rule not in RULES:
            raise ModelError(f"fusion rule {rule!r} is not one of {', '.join(RULES)}")
        return RULES[rule]()
    if isinstance(rule, nn.Module) or callable(rule):
        return rule
    raise ModelError(f"a fusion rule is a name, a module or a callable, not {type(rule).__name__}")


_Call = tuple[str | None, str | None, Callable[..., Any] | None]
"""How a part is called: (sub-module path, method name or None, plain function or None)."""


class Assembled(nn.Module):
    """Encoder, fusion rule and decoder called one after the other, as one model.

    Parameters
    ----------
    encoder : module, bound method, callable, or a sequence of them
        Applied to every input (one shared encoder), or one per input (a sequence or an
        ``nn.ModuleList``).
    rule : str, module or callable
        A name of :data:`RULES` or ``rule(*features) -> fused``.
    decoder : module, bound method or callable
        ``decoder(fused)``; with multi-scale features it receives the list of fused scales
        (or the scales as separate arguments with ``unpack=True``).
    num_inputs : int, optional
        How many images it fuses: the number of encoders when there is one per input,
        else 2.
    unpack : bool
        Call the decoder as ``decoder(*scales)`` instead of ``decoder(scales)``.
    name : str, optional
        Display name (default: the class of the network whose methods the parts are, or
        ``"Assembled"``).

    Raises
    ------
    ModelError
        For a part that is neither a module, a bound method of one nor a callable.
    """

    def __init__(
        self,
        encoder: Any,
        rule: str | nn.Module | Callable[..., torch.Tensor],
        decoder: Any,
        *,
        num_inputs: int | None = None,
        unpack: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self._owners: dict[int, str] = {}
        per_input = isinstance(encoder, Sequence | nn.ModuleList) and not isinstance(encoder, str)
        if per_input:
            encoders = list(encoder)
            if not encoders:
                raise ModelError("encoder: an empty list of encoders")
            if all(isinstance(e, nn.Module) for e in encoders):
                self.encoder = nn.ModuleList(encoders)
                self._encoders: list[_Call] = [
                    (f"encoder.{i}", None, None) for i in range(len(encoders))
                ]
            else:
                self._encoders = [
                    self._resolve(f"encoder_{i + 1}", e) for i, e in enumerate(encoders)
                ]
        else:
            self._encoders = [self._resolve("encoder", encoder)]
        self._rule = self._resolve("rule", make_rule(rule))
        self._decoder = self._resolve("decoder", decoder)
        count = num_inputs if num_inputs is not None else (len(self._encoders) if per_input else 2)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ModelError(f"num_inputs must be a whole number ≥ 1, not {count!r}")
        if per_input and count != len(self._encoders):
            raise ModelError(f"{len(self._encoders)} encoders for {count} inputs")
        self.num_inputs = count
        self.per_input = per_input
        self.unpack = unpack
        owners = {id(getattr(p, "__self__", p)) for p in (encoder, decoder)}
        if name is None and len(owners) == 1 and inspect.ismethod(decoder):
            name = display_name(decoder.__self__)
        self.display_name = name or "Assembled"
        del self._owners  # ids are only meaningful while registering
        self.__class__ = with_inputs(type(self), count)

    def _resolve(self, role: str, part: Any) -> _Call:
        """Register ``part``'s module and say how to call it."""
        if isinstance(part, nn.Module):
            return (self._register(role, part), None, None)
        if inspect.ismethod(part) and isinstance(part.__self__, nn.Module):
            index = sum(1 for path in self._owners.values() if path.startswith("network"))
            owner = self._register(
                "network" if index == 0 else f"network_{index + 1}", part.__self__
            )
            return (owner, part.__name__, None)
        if callable(part):
            return (None, None, part)
        raise ModelError(
            f"{role}: a module, a bound method of one or a callable, not {type(part).__name__}"
        )

    def _register(self, path: str, module: nn.Module) -> str:
        found = self._owners.get(id(module))
        if found is not None:
            return found
        self.add_module(path, module)
        self._owners[id(module)] = path
        return path

    def _invoke(self, call: _Call, *args: Any) -> Any:
        path, method, function = call
        if function is not None:
            return function(*args)
        module = self.get_submodule(path or "")
        return module(*args) if method is None else getattr(module, method)(*args)

    def fuse(self, features: list[Any]) -> Any:
        """Apply the rule to the inputs' features, scale by scale when there are several."""
        first = features[0]
        if isinstance(first, Mapping):
            return {key: self._invoke(self._rule, *(f[key] for f in features)) for key in first}
        if isinstance(first, tuple | list):
            if any(len(f) != len(first) for f in features):
                raise ModelError("the encoders return different numbers of feature maps")
            return [
                self._invoke(self._rule, *(f[level] for f in features))
                for level in range(len(first))
            ]
        return self._invoke(self._rule, *features)

    def forward(self, *inputs: torch.Tensor) -> Any:
        """Encode every input, fuse the features, decode."""
        if len(inputs) != self.num_inputs:
            raise ModelError(
                f"{self.display_name} fuses {self.num_inputs} inputs, got {len(inputs)}"
            )
        features = [
            self._invoke(self._encoders[k if self.per_input else 0], x)
            for k, x in enumerate(inputs)
        ]
        fused = self.fuse(features)
        if self.unpack and isinstance(fused, list):
            return self._invoke(self._decoder, *fused)
        return self._invoke(self._decoder, fused)
