"""softflow: differentiable control flow for JAX.

Soft comparisons turn conditions into truth values in [0, 1]; ``soft_if`` / ``soft_where`` /
``soft_switch`` blend branches by them; ``soft_while`` / ``soft_fori_loop`` turn loops into a
mixture over the step at which they stop. At softness -> 0 every primitive is the exact program.
"""

import importlib.metadata

from ._branch import (
    soft_if as soft_if,
    soft_select as soft_select,
    soft_switch as soft_switch,
    soft_where as soft_where,
)
from ._compare import (
    between as between,
    equal as equal,
    greater as greater,
    greater_equal as greater_equal,
    less as less,
    less_equal as less_equal,
    not_equal as not_equal,
)
from ._count import (
    count_distribution as count_distribution,
    count_equal as count_equal,
    count_expectation as count_expectation,
    count_greater as count_greater,
    count_greater_equal as count_greater_equal,
    count_less as count_less,
    count_less_equal as count_less_equal,
    count_not_equal as count_not_equal,
)
from ._gradient_check import gradient_check as gradient_check
from ._index import put as put, take as take
from ._kinds import KINDS as KINDS, sigmoid as sigmoid
from ._logic import (
    TNORMS as TNORMS,
    all as all,
    any as any,
    logical_and as logical_and,
    logical_not as logical_not,
    logical_or as logical_or,
    logical_xor as logical_xor,
)
from ._loop import (
    SEMANTICS as SEMANTICS,
    SoftWhileInfo as SoftWhileInfo,
    soft_fori_loop as soft_fori_loop,
    soft_while as soft_while,
)
from ._modes import MODES as MODES
from ._program import (
    ConversionError as ConversionError,
    RelaxError as RelaxError,
    exact as exact,
    relax as relax,
)
from ._relax import Relaxation as Relaxation
from ._select import argmax as argmax, argmin as argmin, max as max, min as min
from ._smooth import ESTIMATORS as ESTIMATORS, smooth as smooth
from ._sort import (
    METHODS as SORTING_METHODS,
    argsort as argsort,
    median as median,
    quantile as quantile,
    rank as rank,
    sort as sort,
    top_k as top_k,
)
from ._steps import ceil as ceil, floor as floor, round as round, sign as sign

try:
    __version__ = importlib.metadata.version("softflow")
except importlib.metadata.PackageNotFoundError:  # a source checkout on PYTHONPATH, not installed
    __version__ = "0+unknown"

__all__ = [
    "ESTIMATORS",
    "KINDS",
    "MODES",
    "SEMANTICS",
    "SORTING_METHODS",
    "TNORMS",
    "ConversionError",
    "RelaxError",
    "Relaxation",
    "SoftWhileInfo",
    "all",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "between",
    "ceil",
    "count_distribution",
    "count_equal",
    "count_expectation",
    "count_greater",
    "count_greater_equal",
    "count_less",
    "count_less_equal",
    "count_not_equal",
    "equal",
    "exact",
    "floor",
    "gradient_check",
    "greater",
    "greater_equal",
    "less",
    "less_equal",
    "logical_and",
    "logical_not",
    "logical_or",
    "logical_xor",
    "max",
    "median",
    "min",
    "not_equal",
    "put",
    "quantile",
    "rank",
    "relax",
    "round",
    "sigmoid",
    "sign",
    "smooth",
    "soft_fori_loop",
    "soft_if",
    "soft_select",
    "soft_switch",
    "soft_where",
    "soft_while",
    "sort",
    "take",
    "top_k",
]
