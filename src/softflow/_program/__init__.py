"""Relaxing whole programs: :func:`softflow.relax` evaluates a function's jaxpr with a soft rule
for each discontinuity.

The package reads from the outside in; imports only run inward, and there is no import circle:

* ``_api``: :func:`relax`, the :class:`Relaxed` function and its ``explain``;
* ``_syntax`` (with ``_syntax_branches``, ``_syntax_loops``, ``_syntax_state``): the converter of
  Python ``if`` / ``while`` / ``for`` to JAX (diastatic-malt); it needs only the markers;
* ``_rules_logic``, ``_rules_select``, ``_rules_control``, ``_rules_arrays``, ``_rules_indexing``,
  ``_rules_relaxed_reads``, ``_rules_masks``: the soft rules, one file per family, each
  registering its rules in the interpreter's table (``_own_bounds``, ``_affine``: what the rules
  of comparisons and of relaxed integers use; ``_rules_present``: what the reductions do with
  values masked by a sentinel with a relaxed probability);
* ``_interpreter``: walks a jaxpr and applies the rule of each equation;
* ``_boundaries``: soft values crossing loop carries and branch outputs as arrays;
* ``_values``: the forms a value takes (exact, live, soft bool, categorical, expected);
* ``_markers``: :func:`exact` and the loop-exit mark, found by name in a jaxpr;
* ``_jaxpr``: the only reader of equation parameters that differ between JAX versions;
* ``_source``, ``_explain``, ``_errors``: the user's source lines, the record of what was
  relaxed, and the errors.
"""

from ._api import Relaxed as Relaxed, relax as relax
from ._errors import ConversionError as ConversionError, RelaxError as RelaxError
from ._explain import Explanation as Explanation, RelaxedOp as RelaxedOp
from ._markers import exact as exact
