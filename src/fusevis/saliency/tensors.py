"""Former home of the input, output and switch helpers, kept for callers outside the package.

Its jobs now live in modules named for them: :mod:`fusevis.saliency.inputs` (checking and
recognising inputs), :mod:`fusevis.saliency.outputs` (the explained output channel),
:mod:`fusevis.saliency.switches` (settings switched for a computation) and
:mod:`fusevis.saliency.maps` (:class:`Cancelled`). Nothing in ``fusevis.saliency`` imports
this module; import from those instead.
"""

from fusevis.saliency.inputs import as_input_tuple, check_pixel
from fusevis.saliency.maps import Cancelled
from fusevis.saliency.outputs import LUMA, OutputChannel, forward_selected, select_output
from fusevis.saliency.switches import flushed_denormals, frozen_parameters

__all__ = [
    "LUMA",
    "Cancelled",
    "OutputChannel",
    "as_input_tuple",
    "check_pixel",
    "flushed_denormals",
    "forward_selected",
    "frozen_parameters",
    "select_output",
]
