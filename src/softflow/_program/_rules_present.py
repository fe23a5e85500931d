"""Reductions over values masked by a sentinel with a relaxed probability
(``jnp.where(done, jnp.inf, d)``, remembered by :func:`._rules_select.masked`): ``argmax`` /
``argmin`` and ``max`` / ``min`` weigh each element by its presence and by each other element
being absent or beaten (:func:`softflow._select.argmax_of_present`), not by its shifted value
``x - τ log q`` alone, whose extreme is exact only once ``q`` underflows."""

import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn

from .. import _select
from .._modes import straight_through
from . import _jaxpr
from ._generic import hard_thunk
from ._interpreter import Interpreter
from ._rules_select import present_or_sentinel
from ._values import Categorical, Live, unwrap


def _present(self: Interpreter, eqn: JaxprEqn, value, smallest: bool) -> tuple | None:
    """The values and probabilities of presence behind ``value`` when a sentinel above
    (``smallest``) or below them masks it, else None."""
    raw = unwrap(value)
    present = self.presences.get(id(raw))
    if present is None or present[0] is not raw or (present[3] > 0) != smallest:
        return None
    return present


def argmax_of_present(self: Interpreter, eqn: JaxprEqn, value) -> list | None:
    """``argmax`` (``argmin``) of values masked by ``-inf`` (``inf``): None where they are not."""
    smallest = eqn.primitive.name == "argmin"
    if (present := _present(self, eqn, value, smallest)) is None:
        return None
    _, x, q, _ = present
    (axis,) = _jaxpr.axes(eqn)
    self.record(eqn, "each element weighed by its presence and by the present ones it beats")
    weights = _select.argmax_of_present(-x if smallest else x, q, axis, **self.compare_options())
    probs = jnp.moveaxis(weights, axis, -1)
    cands = np.broadcast_to(np.arange(probs.shape[-1], dtype=_jaxpr.index_dtype(eqn)), probs.shape)
    return [Categorical(cands, probs, hard_thunk(eqn, [value])(0))]


def extreme_of_present(self: Interpreter, eqn: JaxprEqn, value) -> list | None:
    """``max`` (``min``) of values masked by ``-inf`` (``inf``): the expected present extreme,
    itself present where any element is (``x + τ log q`` against ``-inf``, as a masked element
    is); None where they are not masked, or in hard mode (the exact reduction)."""
    smallest = eqn.primitive.name == "reduce_min"
    options = self.compare_options()
    if options["mode"] == "hard" or (present := _present(self, eqn, value, smallest)) is None:
        return None
    _, x, q, mark = present
    axes = _jaxpr.axes(eqn)
    kept = [d for d in range(x.ndim) if d not in axes]
    x, q = (
        jnp.transpose(v, (*kept, *axes)).reshape(*(v.shape[d] for d in kept), -1) for v in (x, q)
    )
    self.record(eqn, "the expected extreme of the present elements, present where any is")
    tau = jnp.asarray(options["softness"], x.dtype)[..., None]
    winners, _ = _select.present_winners(
        -x if smallest else x, q.astype(x.dtype), tau, options["kind"]
    )
    some = jnp.sum(winners, axis=-1)  # (not 1 - nothing: that loses a small one to rounding)
    extreme = _select.expectation(winners / jnp.where(some > 0, some, 1)[..., None], x)
    soft = present_or_sentinel(extreme, some, mark, options["softness"])
    if options["mode"] == "straight_through":
        (exact,) = _jaxpr.bind(eqn, [unwrap(value)])
        soft = straight_through(exact, soft)
    return [Live(soft)]
