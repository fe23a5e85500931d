"""Static bounds of relaxed and exact integers: what a loop needs to carry an integer as a
distribution over a range known at trace time."""

import math

import numpy as np

from .._checks import is_concrete
from ._values import Categorical, Expected, Live, SoftBool


def interval(value) -> tuple[int, int] | None:
    """Static bounds of an integer or boolean value, if known: its values or candidates when
    known at trace time, else the bounds recorded with them."""
    if isinstance(value, SoftBool):
        return 0, 1
    if isinstance(value, Categorical):
        if is_concrete(value.cands) and np.size(value.cands):
            return _known_interval(np.asarray(value.cands))
        if value.bounds is None or not all(map(math.isfinite, value.bounds)):
            return None
        return int(value.bounds[0]), int(value.bounds[1])
    if isinstance(value, Live | Expected) or not is_concrete(value) or np.size(value) == 0:
        return None
    return _known_interval(np.asarray(value))


def _known_interval(known: np.ndarray) -> tuple[int, int] | None:
    """The integer bounds of values known at trace time; None where they are not finite (a float
    case such as ``-inf`` chosen by a relaxed index has no integer bounds)."""
    low, high = known.min(), known.max()
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    return int(low), int(high)


def half_interval(value) -> tuple[float, float]:
    """Static bounds of an integer value, each infinite where it is not known."""
    found = interval(value)
    if found is not None:
        return found
    if isinstance(value, Categorical) and value.bounds is not None:
        return value.bounds
    return -math.inf, math.inf
