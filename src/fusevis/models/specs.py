"""Models as a command line names them: specs, conventions, parts and display names.

A command names its models with repeatable options that pair by position, as
``--weights`` always has: the i-th ``--weights``, ``--adapt`` and ``--name`` belong to the
i-th model. Models assembled from parts (``--parts encoder=SPEC,decoder=SPEC`` with
``--rule``) follow the ``--model`` ones in that order. :func:`model_specs` turns the
options into :class:`ModelSpec` values (plain, picklable: a worker process can build the
model again), :func:`choose_loading` decides how the images must be loaded for their
conventions, and :func:`load_named_models` builds them under their display names.

Nothing here knows about terminals or HTTP; every problem is one line
(:class:`~fusevis.errors.ModelError` or :class:`~fusevis.errors.InputError`).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from fusevis.errors import InputError, ModelError
from fusevis.io.image import Image
from fusevis.models.adapter import Adapter, Conventions, Loading
from fusevis.models.parts import RULES, Assembled
from fusevis.models.registry import _import_user_object, _load_into, get_entry, resolve_model
from fusevis.models.safe_pickle import one_line

__all__ = [
    "DEFAULT_LOADING",
    "PART_ROLES",
    "ModelSpec",
    "build_model",
    "check_loaded",
    "choose_loading",
    "load_model",
    "load_named_models",
    "model_specs",
    "name_models",
    "parse_parts",
]

PART_ROLES = ("encoder", "decoder")
"""The parts ``--parts`` names (both required)."""

DEFAULT_LOADING = Loading("minmax", "gray")
"""How images load when no model's conventions ask otherwise (the paper's choice)."""


@dataclass(frozen=True)
class ModelSpec:
    """One model as the command line names it.

    Attributes
    ----------
    model : str or None
        A registered name, ``package.module:Name`` or ``file.py:Name``; None for a model
        assembled from ``parts``.
    weights : str or None
        The ``--weights`` value (None: a registered model's shipped weights, none for
        a user's model or an assembled one).
    conventions : Conventions or None
        The ``--adapt`` conventions (None: the model is called as it is).
    name : str or None
        The ``--name`` given.
    parts : tuple of (role, SPEC)
        For an assembled model: ``(("encoder", SPEC), ("decoder", SPEC))``.
    rule : str or None
        For an assembled model: a rule of :data:`fusevis.models.parts.RULES` or a SPEC.
    """

    model: str | None
    weights: str | None = None
    conventions: Conventions | None = None
    name: str | None = None
    parts: tuple[tuple[str, str], ...] = ()
    rule: str | None = None

    @property
    def given_name(self) -> str | None:
        """The name the user chose: ``--name``, else the conventions' ``name``."""
        if self.name:
            return self.name
        return self.conventions.name if self.conventions is not None else None

    @property
    def label(self) -> str:
        """The display name known before building: the given one, else from the spec."""
        given = self.given_name
        if given:
            return given
        if self.parts:
            owners = {_owner(spec)[1] for _, spec in self.parts if _owner(spec)[2]}
            return owners.pop() if len(owners) == 1 else "Assembled"
        spec = self.model or ""
        if ":" in spec:
            return spec.rsplit(":", 1)[-1]
        try:
            return get_entry(spec).name
        except ModelError:
            return spec

    @property
    def adapted(self) -> bool:
        """Whether the model needs an :class:`Adapter` (conventions other than a name)."""
        if self.conventions is None:
            return False
        return dataclasses.replace(self.conventions, name=None) != Conventions()


def _owner(spec: str) -> tuple[str, str, tuple[str, ...]]:
    """``(model spec, its name, attribute path)`` of a part SPEC such as ``f.py:Net.encoder``."""
    target, colon, attribute = spec.rpartition(":")
    head, _, rest = (attribute if colon else spec).partition(".")
    base = f"{target}:{head}" if colon else head
    return base, head, tuple(part for part in rest.split(".") if part) if rest else ()


def parse_parts(text: str) -> tuple[tuple[str, str], ...]:
    """``"encoder=SPEC,decoder=SPEC"`` as ``(("encoder", SPEC), ("decoder", SPEC))``.

    Raises
    ------
    ModelError
        For a part that is not ``ROLE=SPEC``, an unknown or repeated role, a missing one.
    """
    found: dict[str, str] = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        role, sep, spec = item.partition("=")
        role, spec = role.strip(), spec.strip()
        if not sep or not role or not spec:
            raise ModelError(
                f"--parts {one_line(text)!r}: {one_line(item)!r} should read ROLE=SPEC"
            )
        if role not in PART_ROLES:
            raise ModelError(
                f"--parts {one_line(text)!r}: unknown part {one_line(role)!r} "
                f"(known: {', '.join(PART_ROLES)})"
            )
        if role in found:
            raise ModelError(f"--parts {one_line(text)!r}: {role} given twice")
        found[role] = spec
    missing = [role for role in PART_ROLES if role not in found]
    if missing:
        raise ModelError(f"--parts {one_line(text)!r}: no {' and no '.join(missing)}")
    return tuple((role, found[role]) for role in PART_ROLES)


def _counted(values: Sequence[str] | None, option: str, total: int) -> list[str | None]:
    """``values`` padded with None to ``total``; more values than models is an error."""
    chosen: list[str | None] = list(values or [])
    if len(chosen) > total:
        raise InputError(None, f"{len(chosen)} {option} for {total} model{'s' * (total != 1)}")
    return chosen + [None] * (total - len(chosen))


def model_specs(
    models: Sequence[str] | None,
    weights: Sequence[str] | None = None,
    adapt: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    parts: Sequence[str] | None = None,
    rules: Sequence[str] | None = None,
) -> list[ModelSpec]:
    """The models named by repeatable command-line options, paired by position.

    Parameters
    ----------
    models : sequence of str
        ``--model`` values.
    weights, adapt, names : sequence of str, optional
        ``--weights``, ``--adapt`` and ``--name`` for the model in the same position
        (the ``--model`` ones first, then the ``--parts`` ones); fewer than the models
        leaves the rest at their defaults; ``--adapt ""`` keeps a model's defaults.
    parts, rules : sequence of str, optional
        ``--parts`` (``encoder=SPEC,decoder=SPEC``) and ``--rule`` for each assembled model.

    Raises
    ------
    InputError, ModelError
        For no model, more of an option than models, a convention or part that does not
        parse (one line).
    """
    models, parts, rules = list(models or []), list(parts or []), list(rules or [])
    total = len(models) + len(parts)
    if total == 0:
        raise InputError(None, "name at least one --model (or --parts with --rule)")
    if len(rules) > len(parts):
        raise InputError(None, f"{len(rules)} --rule for {len(parts)} --parts")
    if len(rules) < len(parts):
        raise InputError(
            None,
            f"--parts {one_line(parts[len(rules)])!r} needs a --rule "
            f"({', '.join(RULES)} or a SPEC such as rules.py:MyRule)",
        )
    chosen_weights = _counted(weights, "--weights", total)
    chosen_adapt = _counted(adapt, "--adapt", total)
    chosen_names = _counted(names, "--name", total)
    specs = []
    for index in range(total):
        is_part = index >= len(models)
        model = None if is_part else models[index].strip()
        if model is not None and not model:
            raise InputError(None, "--model is empty")
        name = chosen_names[index]
        if name is not None:
            name = " ".join(name.split())
            if not name:
                raise InputError(None, "--name must not be empty")
        text = chosen_adapt[index]
        conventions = None
        if text is not None and text.strip():
            try:
                conventions = Conventions.from_text(text)
            except ModelError as error:
                raise ModelError(f"--adapt {one_line(text)!r}: {error}") from None
        weight = chosen_weights[index]
        specs.append(
            ModelSpec(
                model=model,
                weights=weight if weight is None or weight.strip() else None,
                conventions=conventions,
                name=name,
                parts=parse_parts(parts[index - len(models)]) if is_part else (),
                rule=rules[index - len(models)].strip() if is_part else None,
            )
        )
    return specs


def choose_loading(
    specs: Sequence[ModelSpec], normalize: str | None = None, color: str | None = None
) -> Loading:
    """How to load the images for every model's conventions.

    Without an explicit ``normalize``/``color``, each model's conventions choose
    (:meth:`Conventions.loading`; models without conventions, and conventions that do
    not care, take :data:`DEFAULT_LOADING`); models that need different loaders cannot
    share one image set. An explicit choice that a model's conventions cannot use is an
    error rather than silently other images.

    Raises
    ------
    ModelError
        Naming the model and what it needs (one line).
    """
    chosen = {"normalize": normalize, "color": color}
    for field in ("normalize", "color"):
        if chosen[field] is not None:
            continue
        wanted: dict[str, str] = {}
        for spec in specs:
            needs = spec.conventions.loading() if spec.conventions is not None else Loading()
            value = getattr(needs, field) or getattr(DEFAULT_LOADING, field)
            wanted.setdefault(value, spec.label)
        if len(wanted) > 1:
            described = ", ".join(
                f"{label} needs {field} {value}" for value, label in wanted.items()
            )
            raise ModelError(f"the models need different loading ({described}); run them apart")
        chosen[field] = next(iter(wanted), getattr(DEFAULT_LOADING, field))
    loading = Loading(chosen["normalize"], chosen["color"])
    for spec in specs:
        if spec.conventions is not None:
            try:
                spec.conventions.check_loading(loading.normalize, loading.color)  # type: ignore[arg-type]
            except ModelError as error:
                raise ModelError(f"{spec.label}: {error}") from None
    return loading


def check_loaded(models: Mapping[str, nn.Module], images: Sequence[Image]) -> None:
    """Refuse loaded images that evidently do not suit an adapted model's scale.

    Raises
    ------
    InputError
        Naming the image and the values found (see :meth:`Conventions.check_values`).
    """
    sources = [str(image.source) if image.source is not None else None for image in images]
    for model in models.values():
        if isinstance(model, Adapter):
            model.conventions.check_values(
                [image.data for image in images],
                [s or f"input {k + 1}" for k, s in enumerate(sources)],
            )


def _part(role: str, text: str, owners: dict[str, nn.Module]) -> Any:
    """A part from its SPEC: a module, or a module's attribute (a bound method, a sub-module)."""
    base, _, path = _owner(text)
    if base not in owners:
        owners[base] = resolve_model(base, None if ":" in base else "DEFAULT")
    found: Any = owners[base]
    for attribute in path:
        if not hasattr(found, attribute):
            raise ModelError(
                f"{role} {one_line(text)!r}: {type(found).__name__} has no attribute {attribute!r}"
            )
        found = getattr(found, attribute)
    if not (isinstance(found, nn.Module) or callable(found)):
        raise ModelError(f"{role} {one_line(text)!r} is a {type(found).__name__}, not callable")
    return found


def _rule(text: str) -> Any:
    """A fusion rule: a name of :data:`RULES`, or a SPEC naming a module class or a function."""
    if text in RULES:
        return text
    if ":" not in text:
        raise ModelError(
            f"fusion rule {one_line(text)!r} is not one of {', '.join(RULES)} "
            "or a SPEC (module:Name, file.py:Name)"
        )
    found = _import_user_object(text)
    if inspect.isclass(found):
        if not issubclass(found, nn.Module):
            raise ModelError(f"fusion rule {one_line(text)} is a class but not a torch.nn.Module")
        try:
            return found()
        except Exception as error:  # noqa: BLE001 - the user's constructor failing: one line
            raise ModelError(
                f"fusion rule {one_line(text)}: constructing it failed: {error}"
            ) from None
    if not callable(found):
        raise ModelError(f"fusion rule {one_line(text)} is not callable")
    return found


def build_model(spec: ModelSpec, num_inputs: int | None = None) -> nn.Module:
    """Build one model (in eval mode): resolve or assemble it, load weights, adapt it.

    Parameters
    ----------
    spec : ModelSpec
        The model.
    num_inputs : int, optional
        How many images it will fuse (the adapter's and the assembled model's arity).
    """
    if spec.parts:
        owners: dict[str, nn.Module] = {}
        roles = {role: _part(role, text, owners) for role, text in spec.parts}
        model: nn.Module = Assembled(
            roles["encoder"],
            _rule(spec.rule or ""),
            roles["decoder"],
            num_inputs=num_inputs,
            name=spec.given_name,
        )
        if spec.weights is not None and spec.weights.upper() != "DEFAULT":
            _load_into(model, None, spec.weights)
    else:
        model = resolve_model(spec.model or "", spec.weights if spec.weights else "DEFAULT")
    if spec.adapted:
        model = Adapter(model, spec.conventions, num_inputs=num_inputs)
    return model.eval()


def _own_name(model: nn.Module) -> str | None:
    """A display name the network itself declares (not one derived from its class)."""
    inner = model.model if isinstance(model, Adapter) else model
    name = inner.__dict__.get("display_name", getattr(type(inner), "display_name", None))
    return name if isinstance(name, str) and name.strip() else None


def load_named_models(
    models: Sequence[str] | None,
    weights: Sequence[str] | None = None,
    adapt: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    num_inputs: int | None = None,
    parts: Sequence[str] | None = None,
    rules: Sequence[str] | None = None,
) -> dict[str, nn.Module]:
    """Models by display name, from repeatable command-line options paired by position.

    The arguments are those of :func:`model_specs`; ``num_inputs`` is the number of
    images the models will fuse (``len(images)``). A display name is the ``--name`` given,
    else the ``--adapt`` conventions' ``name``, else one the network declares
    (``display_name``), else the registered name or the spec's ``Name``. Given names are
    kept as they are (two equal ones are an error); derived names that repeat get
    ``-2``, ``-3``, ... Each model's ``display_name`` is set to its key.

    Raises
    ------
    InputError, ModelError
        One line, for any option, model, part or weights that does not work.
    """
    specs = model_specs(models, weights, adapt, names, parts, rules)
    return name_models([(spec, build_model(spec, num_inputs)) for spec in specs])


def name_models(built: Sequence[tuple[ModelSpec, nn.Module]]) -> dict[str, nn.Module]:
    """Built models under unique display names (see :func:`load_named_models`)."""
    given = [spec.given_name for spec, _ in built]
    taken: set[str] = set()
    for name in given:
        if name is None:
            continue
        if name in taken:
            raise InputError(None, f"two models are named {name!r}; give each its own --name")
        taken.add(name)
    named: dict[str, nn.Module] = {}
    for (spec, model), name in zip(built, given, strict=True):
        if name is None:
            base = _own_name(model) or spec.label
            name, count = base, 1
            while name in taken:
                count += 1
                name = f"{base}-{count}"
            taken.add(name)
        try:
            model.display_name = name
        except (AttributeError, TypeError):  # a read-only property of the user's class
            pass
        named[name] = model
    return named


def load_model(spec: ModelSpec, num_inputs: int | None = None) -> tuple[str, nn.Module]:
    """One model and its display name (a worker building a model planned elsewhere)."""
    ((name, model),) = name_models([(spec, build_model(spec, num_inputs))]).items()
    return name, model
