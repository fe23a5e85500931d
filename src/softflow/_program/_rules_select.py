"""The rule for ``select_n`` (``jnp.where``, ``jnp.select``, ``lax.select``): a blend by the
probability of the condition, with infinite and sentinel cases kept apart, and a select by a
relaxed integer's truth value per outcome of that integer."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import JaxprEqn, Literal as JaxprLiteral

from .._branch import soft_where
from .._checks import is_concrete
from .._select import safe_log as _safe_log
from . import _jaxpr, _views
from ._folds import case_weights
from ._generic import hard_thunk
from ._interpreter import Interpreter, rule
from ._intervals import half_interval
from ._values import (
    Categorical,
    Clamp,
    Expected,
    Live,
    Mixture,
    SoftBool,
    aval,
    bernoulli,
    distinct,
    expectation,
    factors_of,
    floating,
    is_live,
    is_soft,
    mean,
    merge,
    unwrap,
    varies,
)


def _constant_value(self: Interpreter, atom) -> np.ndarray | None:
    """The value of ``atom`` when it is a constant of the program (``jnp.inf`` converted,
    broadcast or reshaped, whatever it is traced as), else None."""
    while True:
        known = getattr(atom, "val", None)
        if known is None:
            known = self.known_inputs.get(atom)
        if known is not None:
            return np.asarray(known)
        producer = self.producers.get(atom)
        if producer is None or producer.primitive.name not in (
            "broadcast_in_dim",
            "convert_element_type",
            "reshape",
        ):
            return None
        atom = producer.invars[0]


#: The smallest magnitude of a finite constant taken for a sentinel (``-1e9`` for a masked logit,
#: ``1e9`` for an unreached node): blended linearly, such a constant swamps the other value at
#: any probability (``p * -1e9 + (1 - p) * x``), so it is treated like ``inf`` instead.
SENTINEL_MAGNITUDE = 1e8


def sentinel(self: Interpreter, atom) -> float | None:
    """The sentinel when ``atom`` is one constant everywhere, ``inf``, ``-inf`` or finite of a
    magnitude of at least :data:`SENTINEL_MAGNITUDE`; NaN when it is some other constant that
    holds NaN; None otherwise (infinite elements among finite ones are sentinels element by
    element, as at run time: :func:`blend_with_infinities`)."""
    known = _constant_value(self, atom)
    if known is None or known.size == 0:
        return None
    first = known.reshape(-1)[0]
    if np.all(known == first) and abs(first) >= SENTINEL_MAGNITUDE:
        return float(first)
    return np.nan if np.any(np.isnan(known)) else None


def _all_nan(self: Interpreter, atom) -> bool:
    """Whether ``atom`` is a constant that is NaN everywhere (a mask's fill)."""
    known = _constant_value(self, atom)
    return known is not None and known.size > 0 and bool(np.isnan(known).all())


def _select_sentinel(self: Interpreter, eqn: JaxprEqn, p, cases, sentinels) -> jax.Array:
    r"""``jnp.where(c, x, inf)`` with a relaxed ``c``: the element is ``x`` with probability
    ``q`` and absent (``inf``) otherwise. Its relaxed value is ``x - τ log q``: a soft minimum
    at softness τ (``argmin``, ``sf.min``) weighs it by ``exp(-x / τ) q``, the expected weight
    of the element, and it is ``x`` at ``q = 1`` and ``inf`` at ``q = 0``; with ``-inf``,
    ``x + τ log q`` for a maximum or a softmax. A large finite sentinel ``M`` (``-1e9``) is
    present with probability ``1 - q``: :math:`\mp τ \log(q e^{\mp x/τ} + (1 - q) e^{\mp M/τ})`.
    """
    at = 0 if sentinels[0] is not None else 1
    mark, other = sentinels[at], cases[1 - at]
    if (mark is None) == (sentinels[1 - at] is None) or np.isnan(mark):
        raise self.unsupported(
            eqn,
            "a relaxed condition chooses a constant that is not finite (and not one sentinel, "
            "inf or -inf, against finite values)",
            "choose between a finite value and one sentinel, or keep the condition exact with "
            "sf.exact",
        )
    q = p if at == 0 else 1 - p  # the probability of the finite case (case 1 when pred is True)
    self.record(eqn, f"present with probability q: x {'-+'[mark < 0]} softness * log(q)")
    return masked(self, other, q, mark)


_FLIPPED = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}


def select_clamp(self: Interpreter, pred, cases: list, atoms: list) -> Clamp | None:
    """``jnp.where(u > c, c, u)`` (Python's ``if u > c: u = c``) is ``min(u, c)``, and
    ``jnp.where(u < c, c, u)`` is ``max(u, c)``: a clip of ``u`` by the exact bound ``c`` (see
    :class:`Clamp`), so that comparing the result with ``c`` is exact where it saturates, as
    it is for ``jnp.minimum(u, c)``; also of a value clipped before (``jax.nn.hard_tanh``).
    ``pred``: the truth value (or its integer) choosing between ``cases`` (False first), made
    by the comparison it remembers; ``atoms``: the cases' variables."""
    compared = pred.__dict__.get("_compared")
    if compared is None:
        return None
    name, u, c, (u_atom, c_atom) = compared
    if varies(c):
        name, u, c, c_atom = _FLIPPED[name], c, u, u_atom
    bound = _known(self, c, c_atom)
    if not isinstance(u, Live) or bound is None:
        return None
    above = name in ("gt", "ge")  # (true above c)
    lowers = (1, 0) if above else (0, 1)  # (positions of: the bound, what is clipped)
    for (at_bound, clipped), is_min in ((lowers, True), (lowers[::-1], False)):
        known = _known(self, cases[at_bound], atoms[at_bound])
        if known is None or not np.all(np.equal(known, bound)):
            continue
        inner = cases[clipped]
        same = _views.same_elements(inner, u)  # (u itself, or a copy: a weak type made strong)
        if not isinstance(inner, Live):
            return None
        if same is not None and same.all() and np.shape(inner.value) == np.shape(u.value):
            low, high = (inner.clamp.low, inner.clamp.high) if inner.clamp else (None, None)
        elif inner.clamp and inner.clamp.source is u.value:
            # (hard_tanh: where(x > 1, 1, where(x < -1, -1, x)): x > 1 is y > 1 for the inner
            # y = max(x, -1), as 1 >= -1.)
            low, high = inner.clamp.low, inner.clamp.high
            if not _within(bound, low, high):
                return None
        else:
            return None
        if is_min:
            low = None if low is None else jnp.minimum(low, bound)
            high = bound if high is None else jnp.minimum(high, bound)
        else:
            low = bound if low is None else jnp.maximum(low, bound)
            high = None if high is None else jnp.maximum(high, bound)
        return Clamp(inner.value if inner.clamp is None else inner.clamp.source, low, high)
    return None


def _known(self: Interpreter, value, atom) -> np.ndarray | None:
    """The value of an operand when it is a constant known at trace time."""
    if varies(value):
        return None
    if is_concrete(unwrap(value)):
        return np.asarray(unwrap(value))
    return _constant_value(self, atom)


def _within(bound, low, high) -> bool:
    """Whether the exact ``bound`` lies within the exact bounds ``low`` and ``high``."""
    return all(
        b is None or (is_concrete(b) and bool(np.all(compare(bound, np.asarray(b)))))
        for b, compare in ((low, np.greater_equal), (high, np.less_equal))
    )


def _masked_with_nan(self: Interpreter, eqn: JaxprEqn, pred: SoftBool, cases, hard) -> Live:
    """``jnp.where(c, x, jnp.nan)`` with a relaxed ``c``: ``x`` or NaN (absent), with their
    probabilities, as a mixture of the two, so that a NaN-aware use (``jnp.nansum``,
    ``jnp.isnan``, ``jnp.nanmax``) acts on each outcome: ``jnp.nansum`` is the sum of ``x``
    weighted by its probability. The value itself is the exact program's (a NaN is no number
    to blend), which what reads it as a number gets."""
    out = aval(eqn.outvars[0])
    values = [jnp.broadcast_to(jnp.asarray(unwrap(c), out.dtype), out.shape) for c in cases]
    outcome = bernoulli(pred)
    self.record(eqn, "x or NaN, each with its probability (a mixture)")
    mixture = Mixture(jnp.stack(values, axis=-1), outcome.probs, outcome.factors, True, absent=True)
    return Live(hard(), mixture=mixture)


def _expectation_with_sentinels(self: Interpreter, probs, each, mark) -> jax.Array:
    """The expectation over the outcomes, where some outcomes are an infinite sentinel (an
    element masked with NaN, then given ``-inf`` by ``jnp.nanargmax``): the element is present
    with the probability ``q`` of the finite outcomes, relaxed as :func:`_select_sentinel`
    relaxes it, the expectation of the finite outcomes ``- sign * softness * log q``; remembered
    as :func:`masked` remembers it where the sentinel ``mark`` is known."""
    softness = self.options.softness
    probs = probs.astype(each.dtype)
    infinite = jnp.isinf(each) & (probs > 0)
    q = jnp.sum(jnp.where(infinite, 0, probs), axis=-1)
    kept = jnp.where(infinite, 0, each)
    # (An infinite outcome of probability 0 is out of the finite mean too: its 0 * inf would
    # be a NaN in the gradient, also where the mean is not used.)
    infinite_outcome = jnp.isinf(each)
    finite = jnp.sum(
        jnp.where(infinite_outcome, 0, probs) * jnp.where(infinite_outcome, 0, each), axis=-1
    )
    finite = finite / jnp.where(q > 0, q, 1)
    above = jnp.any(infinite & (each > 0), axis=-1)
    below = jnp.any(infinite & (each < 0), axis=-1)
    sign = jnp.where(above & below, jnp.nan, jnp.where(above, 1, -1)).astype(each.dtype)
    present = finite - sign * jnp.asarray(softness, each.dtype) * _safe_log(q)
    value = jnp.where(jnp.any(infinite, axis=-1), present, expectation(probs, kept))
    if mark is not None:
        self.presences[id(value)] = (value, finite, q, mark)
    return value


def blend_with_infinities(p, x1, x0, softness) -> jax.Array:
    """``soft_where(p, x1, x0)``, where an element of one case that is inf or -inf at run time
    (a table of distances that starts at inf, written at a relaxed index) is a sentinel, as a
    constant one is (:func:`_select_sentinel`): the finite case is present with its probability,
    ``x0 - τ log(1 - p)`` against inf. A blend would be infinite wherever the condition is
    uncertain, with a NaN gradient. Two equal infinities are that infinity."""
    dtype = jnp.result_type(x1, x0)
    if not jnp.issubdtype(dtype, jnp.floating):  # (complex values: blended)
        return soft_where(p, x1, x0)
    x1, x0 = jnp.asarray(x1, dtype), jnp.asarray(x0, dtype)
    p = jnp.asarray(p).astype(dtype)
    # A NaN case of probability 0 (a value masked with NaN, at an outcome that keeps it) is not
    # taken: out of the blend (0 * NaN) and of its gradient.
    nan1, nan0 = jnp.isnan(x1) & (p == 0), jnp.isnan(x0) & (p == 1)
    x1, x0 = jnp.where(nan1, 0, x1), jnp.where(nan0, 0, x0)
    inf1, inf0 = jnp.isinf(x1), jnp.isinf(x0)
    # The blend of the finite elements, with the infinite ones out of its values and gradient.
    blended = soft_where(p, jnp.where(inf1, 0, x1), jnp.where(inf0, 0, x0))
    tau = jnp.asarray(softness, dtype)
    only0 = jnp.where(inf0, 0, x0) - jnp.sign(x1) * tau * _safe_log(1 - p)  # x1 infinite
    only1 = jnp.where(inf1, 0, x1) - jnp.sign(x0) * tau * _safe_log(p)  # x0 infinite
    # Two infinities: the one taken where the condition is exact or they are equal, else NaN.
    both = jnp.where((p == 1) | (x1 == x0), x1, jnp.where(p == 0, x0, jnp.nan))
    out = jnp.where(inf1, jnp.where(inf0, both, only0), jnp.where(inf0, only1, blended))
    return jnp.where(nan1, x0, jnp.where(nan0, x1, out))


def masked(self: Interpreter, x, q, mark: float, shape=None) -> jax.Array:
    """:func:`present_or_sentinel` of ``x``, remembered with ``x`` and ``q`` for an argmax or
    argmin over it (``jnp.argmin(jnp.where(done, jnp.inf, d))``: the greedy's next pick), which
    weighs each element by its presence and not by its shifted value alone. A value masked
    before is present where both masks keep it (taken as independent); ``shape``: the one
    ``x`` is broadcast to."""
    x = jnp.asarray(unwrap(x))
    before = self.presences.get(id(x))
    if before is not None and before[0] is x and np.sign(before[3]) == np.sign(mark):
        x, q = before[1], before[2] * q
    if shape is not None:
        x = jnp.broadcast_to(x, shape)
    value = present_or_sentinel(x, q, mark, self.options.softness)
    whole = (jnp.broadcast_to(x, value.shape), jnp.broadcast_to(q, value.shape))
    self.presences[id(value)] = (value, *whole, mark)
    return value


def present_or_sentinel(x, q, sentinel: float, softness) -> jax.Array:
    """``x`` where it is present (with probability ``q``), ``sentinel`` where it is not, relaxed
    as in :func:`_select_sentinel`; in ``x``'s dtype (``q`` may be wider: a relaxed integer's
    probabilities are in the default float, float64 under x64)."""
    dtype = jnp.result_type(x)
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else q.dtype
    q = q.astype(dtype)
    # Certainly absent: the sentinel, whatever x is (inf, which would meet -inf in a NaN).
    x = jnp.where(q == 0, jnp.zeros((), dtype), x)
    tau = jnp.asarray(softness, dtype)
    sign = 1.0 if sentinel > 0 else -1.0  # a sentinel for minima (+) or maxima (-)
    if np.isinf(sentinel):
        return x - sign * tau * _safe_log(q)
    kept = -sign * x / tau + _safe_log(q)
    absent = -sign * jnp.asarray(sentinel, dtype) / tau + _safe_log(1 - q)
    return -sign * tau * jnp.logaddexp(kept, absent)


def _gradient_stopped_copy(self: Interpreter, eqn: JaxprEqn) -> int | None:
    """The case of ``select_n(c, stop_gradient(x), x)`` (either order) that is ``x`` itself.

    ``jax.vmap`` of a ``cond`` on a batched predicate writes this before each branch, so that a
    branch not taken sends no gradient to ``x``. Relaxed, every branch is taken in part: both
    cases are the same value, and the gradient must flow through it.
    """
    if len(eqn.invars) != 3 or any(isinstance(v, JaxprLiteral) for v in eqn.invars[1:]):
        return None
    first, second = eqn.invars[1:]
    for plain, stopped in ((1, first), (0, second)):
        producer = self.producers.get(stopped)
        if (
            producer is not None
            and producer.primitive.name == "stop_gradient"
            and producer.invars[0] is eqn.invars[1 + plain]
        ):
            return plain
    return None


def _expected_selection(self: Interpreter, eqn: JaxprEqn, pred, cases: list, hard) -> Expected:
    """``select_n`` of integers, some known only by their expected values, by a relaxed
    selector: the expected value of the selected case."""
    selector = bernoulli(pred) if isinstance(pred, SoftBool) else pred
    weights = case_weights(selector, len(cases))
    dtype = jnp.result_type(selector.probs.dtype, *(mean(c).dtype for c in cases if is_soft(c)))
    total = jnp.zeros((), dtype)
    for weight, case in zip(weights, cases, strict=True):
        total = total + weight.astype(dtype) * mean(case).astype(dtype)
    self.record(eqn, "select on expected values (expectation over the selector)")
    return Expected(total, hard)


def joined_choices(index, case) -> Categorical | None:
    """The choices of ``case`` as a distribution, when a relaxed integer that made them is also
    behind ``index`` (choices by unrelated conditions are independent of it: their expectation
    is the case's value)."""
    if not (isinstance(case, Live) and case.choices):
        return None
    index = bernoulli(index) if isinstance(index, SoftBool) else index
    choices = case.choices.categorical()
    return choices if linked(index, choices) else None


def linked(a: Categorical, b: Categorical) -> bool:
    """Whether two distributions share outcomes of a relaxed integer (a factor)."""
    return bool({id(f.probs) for f in factors_of(a)} & {id(f.probs) for f in factors_of(b)})


def chosen_per_outcome(index, cases: list, shape: tuple, value=None) -> Live:
    """A float that a relaxed integer chooses among ``cases`` (a branch index, or a truth value
    choosing case 1 over case 0), with the case of each outcome of that integer: a choice of it
    by another truth value of the same integer (an ``elif`` ladder, nested ``jnp.where``) is then
    over their joint outcomes, not over independent events. Only selects and branches read these
    choices (a comparison of the value is of the value), so that a loop does not multiply them.
    ``value``: the expectation where no case has choices of its own (computed by the caller,
    infinite cases apart); otherwise the expectation over the joint outcomes."""
    index = bernoulli(index) if isinstance(index, SoftBool) else index
    own = [joined_choices(index, c) for c in cases]
    probs, cands, factors = merge([index, *(m for m in own if m is not None)])
    on_outcomes = iter(cands[1:])
    each_case = [
        next(on_outcomes) if m is not None else jnp.asarray(unwrap(c))[..., None]
        for c, m in zip(cases, own, strict=True)
    ]
    chosen = jnp.clip(jnp.asarray(cands[0]).astype(jnp.int32), 0, len(cases) - 1)
    each = jnp.broadcast_to(each_case[-1], (*shape, probs.shape[-1]))
    for n in reversed(range(len(cases) - 1)):
        each = jnp.where(chosen == n, each_case[n], each)
    if value is None or any(m is not None for m in own):
        value = expectation(probs, each)
    return Live(value, choices=Mixture(each, probs, factors, any(is_live(c) for c in cases)))


def _select_given(self: Interpreter, eqn: JaxprEqn, pred: SoftBool, cases: list, hard):
    """A select by a truth value whose probability depends on the outcome of a relaxed integer
    (``x[f[node]] <= t[node]``) among values of that integer's outcomes (``left[node]``,
    ``right[node]``): per outcome, each case with its conditional probability. Integers come out
    as a new distribution (a tree's next node: for each node, its left child with the
    probability of going left there, its right child otherwise); floats as their expectation.
    None where a case depends on other relaxed values."""
    assert pred.given is not None
    given = pred.given.categorical()
    own = [
        c
        if isinstance(c, Categorical)
        else c.mixture.categorical()
        if isinstance(c, Live) and c.mixture
        else None
        for c in cases
    ]
    joined = [m for m in own if m is not None]
    if (
        not joined  # (then the blend by the expected probability is the same; see below)
        or any(isinstance(c, SoftBool | Expected) for c in cases)
        or not all(linked(given, m) for m in joined)
    ):
        return None
    probs, cands, _ = merge([given, *joined])
    q, aligned = cands[0], iter(cands[1:])
    x0, x1 = (
        next(aligned) if m is not None else jnp.asarray(unwrap(c))[..., None]
        for c, m in zip(cases, own, strict=True)
    )
    out = aval(eqn.outvars[0])
    shape = (*out.shape, probs.shape[-1])
    if floating(out) and any(_all_nan(self, atom) for atom in eqn.invars[1:]):
        # (jnp.nanquantile masks again what is NaN) x or NaN per outcome, as _masked_with_nan
        self.record(eqn, "x or NaN per outcome of the relaxed integer its condition reads at")
        each = [jnp.broadcast_to(jnp.asarray(c, out.dtype), shape) for c in (x0, x1)]
        weights = jnp.concatenate([probs * (1 - q), probs * q], axis=-1)
        mixture = Mixture(jnp.concatenate(each, axis=-1), weights, None, True, absent=True)
        return Live(hard(), mixture=mixture)
    if floating(out):
        self.record(eqn, "sf.soft_where per outcome of the relaxed integer its condition reads at")
        each = blend_with_infinities(q, x1, x0, self.options.softness)
        marks = [m for m in (sentinel(self, atom) for atom in eqn.invars[1:]) if m is not None]
        mark = marks[0] if len(marks) == 1 and np.isinf(marks[0]) else None
        return Live(_expectation_with_sentinels(self, probs, each, mark))
    if out.dtype == jnp.bool_:
        return None
    self.record(eqn, "the case of each outcome of the relaxed integer its condition reads at")
    q = q.astype(probs.dtype)
    xp = np if is_concrete([x0, x1]) else jnp
    both = xp.concatenate([xp.broadcast_to(x0, shape), xp.broadcast_to(x1, shape)], axis=-1)
    weights = jnp.concatenate([probs * (1 - q), probs * q], axis=-1)
    return distinct(Categorical(both.astype(out.dtype), weights, hard))


@rule("select_n")
def _select_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    pred, *cases = invals
    out_aval = aval(eqn.outvars[0])
    plain = _gradient_stopped_copy(self, eqn)
    if plain is not None and is_soft(pred):
        self.record(eqn, "the same value in both cases (one with its gradient stopped)")
        return [cases[plain]]
    if isinstance(pred, Expected):
        raise self.expected_integer(eqn, "its selector")
    hard = hard_thunk(eqn, invals)(0)
    if isinstance(pred, SoftBool) and pred.given is not None:
        given = _select_given(self, eqn, pred, cases, hard)
        if given is not None:
            return [given]
    if isinstance(pred, SoftBool) and not any(isinstance(c, Categorical) for c in cases):
        p = pred.p
        if floating(out_aval):
            sentinels = [sentinel(self, atom) for atom in eqn.invars[1:]]
            two_finite = all(s is not None and np.isfinite(s) for s in sentinels)
            masked = [_all_nan(self, atom) for atom in eqn.invars[1:]]
            if sum(masked) == 1 and not isinstance(cases[masked.index(False)], SoftBool):
                return [_masked_with_nan(self, eqn, pred, cases, hard)]
            if any(s is not None for s in sentinels) and not two_finite:
                return [Live(_select_sentinel(self, eqn, p, cases, sentinels))]
            self.record(eqn, "sf.soft_where")
            values = [unwrap(c) for c in cases]
            blended = blend_with_infinities(p, values[1], values[0], self.options.softness)
            taken = (
                (pred.hard() if pred.hard is not None else p >= 0.5) if self.options.debug else None
            )
            mixture = None
            if not any(is_live(c) for c in cases):
                # Exact cases (jnp.where(x > 0, 3.0, 1.0)): the value is one of them, so an
                # integer conversion of it is over the two integers, not a staircase at 2.0.
                outcome = bernoulli(pred)
                shape = out_aval.shape
                stacked = jnp.stack([jnp.broadcast_to(v, shape) for v in values], axis=-1)
                mixture = Mixture(stacked, outcome.probs, outcome.factors, False)
            value = self.checked_blend(eqn, blended, values, taken)
            clamp = select_clamp(self, pred, cases, eqn.invars[1:])
            return [Live(value, mixture=mixture, clamp=clamp)]
        if out_aval.dtype == jnp.bool_:
            q0, q1 = (mean(c).astype(p.dtype) for c in cases)
            self.record(eqn, "sf.soft_where on probabilities")
            return [SoftBool(soft_where(p, q1, q0), hard)]
        if any(isinstance(c, Expected) for c in cases):
            m0, m1 = (mean(c).astype(p.dtype) for c in cases)
            self.record(eqn, "sf.soft_where on expected values")
            return [Expected(soft_where(p, m1, m0), hard)]
        self.record(eqn, "distribution over the two integers")
        shape = jnp.broadcast_shapes(p.shape, *(np.shape(unwrap(c)) for c in cases))
        # Integers known at trace time stay known (NumPy), so that a state carried by a loop
        # has a static range.
        xp = np if is_concrete([unwrap(c) for c in cases]) else jnp
        c0, c1 = (xp.broadcast_to(unwrap(c), shape) for c in cases)
        # The outcomes of the truth value itself, so that integers chosen by it stay joined
        # (jnp.where(c, 2, 5) * jnp.where(c, 7, 3) is 14 or 15, never 6 or 35).
        outcome = bernoulli(pred)
        lows, highs = zip(*(half_interval(c) for c in cases), strict=True)
        bounds = None if xp is np else (min(lows), max(highs))
        stacked = xp.stack([c0, c1], axis=-1)
        return [Categorical(stacked, outcome.probs, hard, outcome.factors, bounds)]
    if isinstance(pred, SoftBool | Categorical):
        sentinels = [sentinel(self, atom) for atom in eqn.invars[1:]]
        if (
            floating(out_aval)
            and np.dtype(aval(eqn.invars[0]).dtype) == np.bool_
            and not any(is_soft(c) for c in cases)
            and any(s is not None for s in sentinels)
            and not all(s is not None and np.isfinite(s) for s in sentinels)
        ):
            # A condition on a relaxed integer (i == jnp.argmax(x)) choosing a sentinel (-inf,
            # -1e9): as for a soft truth value, with its probability; a blend of the candidates'
            # values would be the sentinel wherever one candidate chooses it. With the case of
            # each outcome of a scalar integer, for an argmax of the result (a greedy's next pick).
            value = _select_sentinel(self, eqn, mean(pred), cases, sentinels)
            if isinstance(pred, Categorical) and np.ndim(pred.probs) == 1:
                return [chosen_per_outcome(pred, cases, out_aval.shape, value)]
            return [Live(value)]
        if any(isinstance(c, Expected) for c in cases):
            # A case known only by its expected value: the expectation over the selector.
            return [_expected_selection(self, eqn, pred, cases, hard)]
        if (
            floating(out_aval)
            and np.dtype(aval(eqn.invars[0]).dtype) == np.bool_
            and not any(is_soft(c) or (isinstance(c, Live) and c.mixture) for c in cases)
        ):
            # Cases the same for every candidate (dist.at[i] written by `where`): the blend by
            # the condition's probability, the expectation over the candidates, with an
            # infinite element (a table of distances from inf) as a sentinel.
            self.record(eqn, "sf.soft_where by the probability under the distribution")
            x0, x1 = (unwrap(c) for c in cases)
            value = blend_with_infinities(mean(pred), x1, x0, self.options.softness)
            # And the case of each candidate: a select of it by another truth value of the same
            # integer (an elif ladder on it) is then over their joint outcomes.
            return [chosen_per_outcome(pred, cases, out_aval.shape, value)]
        if floating(out_aval) and any(joined_choices(pred, c) for c in cases):
            self.record(eqn, "select per joint outcome of the relaxed integers that choose")
            return [chosen_per_outcome(pred, cases, out_aval.shape)]
        if floating(out_aval):
            self.record(eqn, "select per candidate of a distribution (expectation)")
        return self.per_candidate(eqn, invals)
    # An exact selector choosing among relaxed values.
    if any(isinstance(c, Categorical) for c in cases):
        return self.per_candidate(eqn, invals)
    if any(isinstance(c, Expected | SoftBool) for c in cases):
        means = [mean(c) for c in cases if is_soft(c)]
        dtype = jnp.result_type(*means)
        args = [mean(c).astype(dtype) for c in cases]
        (value,) = _jaxpr.bind(eqn, [unwrap(pred), *args])
        if out_aval.dtype == jnp.bool_:
            return [SoftBool(value, hard)]
        return [Expected(value, hard)]
    # (As exact maps are: what relax knows of the cases' elements goes on.)
    return self.default(eqn, invals)
