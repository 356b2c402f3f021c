"""A fixed number of named inputs for modules written as ``forward(self, *inputs)``.

``torch.fx`` cannot trace ``*inputs``: it makes one placeholder for the whole tuple and fails
when the code iterates over it. A module whose number of inputs is known gets a subclass
whose ``forward`` still takes ``*inputs`` when called, but whose signature, as
``inspect.signature`` and ``torch.fx`` read it (through ``__wrapped__``, the
``functools.wraps`` convention), names ``input_1, ..., input_N``. Tracing then makes N
placeholders and the tuple is a plain Python tuple of proxies.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

from torch import nn

_CLASSES: dict[tuple[type, int], type] = {}
_LOCK = threading.Lock()


def _signature(count: int) -> Callable[..., None]:
    """A function ``(self, input_1, ..., input_<count>)`` that returns None, never called.

    Made by giving a do-nothing function's code object more argument names (no source
    text is compiled or run).
    """

    def template(self: Any) -> None:
        return None

    names = ("self", *(f"input_{index}" for index in range(1, count + 1)))
    code = template.__code__.replace(co_argcount=count + 1, co_nlocals=count + 1, co_varnames=names)
    return types.FunctionType(code, {}, "forward")


def with_inputs(cls: type[nn.Module], count: int) -> type[nn.Module]:
    """The subclass of ``cls`` whose ``forward`` shows ``count`` named inputs.

    ``cls.forward`` must take ``(self, *inputs)``. The subclass keeps ``cls``'s name, so
    messages name ``cls``; pickles name ``cls`` and the count. It is made once per
    (class, count).
    """
    if count < 1:
        raise ValueError(f"a fusion model takes at least one input, not {count}")
    key = (cls, count)
    with _LOCK:
        found = _CLASSES.get(key)
        if found is None:
            base_forward = cls.forward

            def forward(self: nn.Module, *inputs: Any) -> Any:
                return base_forward(self, *inputs)

            def __reduce_ex__(self: nn.Module, protocol: Any) -> tuple:  # noqa: N807
                return (_rebuild, (cls, count, self.__getstate__()))

            forward.__doc__ = base_forward.__doc__
            forward.__wrapped__ = _signature(count)  # type: ignore[attr-defined]
            found = type(
                cls.__name__,
                (cls,),
                {
                    "forward": forward,
                    "__reduce_ex__": __reduce_ex__,
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__doc__": cls.__doc__,
                },
            )
            _CLASSES[key] = found
    return found


def _rebuild(cls: type[nn.Module], count: int, state: dict[str, Any]) -> nn.Module:
    """Unpickle a module made by :func:`with_inputs` (pickle finds ``cls`` by its name)."""
    module = with_inputs(cls, count).__new__(with_inputs(cls, count))
    module.__setstate__(state)
    return module
