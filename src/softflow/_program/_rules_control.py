"""Rules for control flow: ``cond`` / ``switch``, ``while_loop``, ``scan`` (calls of inner
jaxprs are in ``_rules_calls``)."""

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any
from jax.extend.core import DropVar, Jaxpr, JaxprEqn

from .._branch import select_by_weights
from .._checks import is_concrete
from .._loop import _soft_while
from . import _jaxpr
from ._boundaries import (
    DEAD,
    INT,
    LIVE,
    MAX_JOINT_STATES,
    Kind,
    carried_apart,
    carry_kinds,
    decode,
    decode_all,
    encode_all,
    exit_loop_kinds,
    joined,
    kind_of,
    kinds_after,
)
from ._errors import RelaxError
from ._folds import case_weights
from ._generic import hard_of
from ._interpreter import Interpreter, rule
from ._markers import EXITS_NAME
from ._rules_select import blend_with_infinities, chosen_per_outcome, select_clamp
from ._saturation import saturated_kinds
from ._trip_counts import counted_steps, only_compared
from ._values import (
    Categorical,
    Expected,
    Live,
    SoftBool,
    aval,
    bernoulli,
    default_float,
    floating,
    is_soft,
    mean,
    merge,
    probability,
    unwrap,
)


def _exact_switch(self: Interpreter, index, branches, operands, kinds, avals) -> list:
    """``lax.switch(index, branches)`` with an exact index, written as one ``cond`` per branch on
    "some loop of the batch takes it" (unbatched under vmap) and a select by the index.

    Under vmap, JAX turns a ``cond`` with a batched index into a select whose operands it wraps
    in ``stop_gradient``; inside the custom JVP of a soft loop those operands include tangents,
    and reverse mode then fails (no transpose rule for ``stop_gradient``, JAX issues 22011 and
    39219). Here the conds stay conds, and the operands of a branch are wrapped before
    differentiation: a loop of the batch that does not take the branch sends no cotangent
    through it (a NaN derivative there cannot leak), as in JAX's own rule.
    """
    n = len(branches)
    index = jnp.clip(index, 0, n - 1)

    def encoded(branch, take):
        def run():
            guarded = [
                Live(jnp.where(take, v.value, jax.lax.stop_gradient(v.value)))
                if isinstance(v, Live)
                else v
                for v in operands
            ]
            return encode_all(self.run_closed(branch, guarded), kinds, avals)

        return run

    outs: list = []
    for k, branch in enumerate(branches):
        take = index == k
        run = encoded(branch, take)
        if n == 1:
            return run()
        shapes = jax.eval_shape(run)
        skipped = [jnp.zeros(s.shape, s.dtype) for s in shapes]
        branch_outs = jax.lax.cond(unvmap_any(take), run, lambda z=skipped: z)
        outs = (
            branch_outs
            if k == 0
            else [jnp.where(take, b, o) for b, o in zip(branch_outs, outs, strict=True)]
        )
    return outs


@rule("cond")
def _cond_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    index, *operands = invals
    branches = _jaxpr.cond_branches(eqn)
    avals = [aval(v) for v in eqn.outvars]
    run = [functools.partial(self.run_closed, b, operands) for b in branches]
    if isinstance(index, Expected):
        raise self.expected_integer(eqn, "its branch index")
    if not is_soft(index) and not isinstance(index, Live) and is_concrete(index):
        # The branch is known at trace time (an opcode fetched from a constant program, a
        # mode known in a loop's first pass): run it alone, so its results stay known too.
        return run[int(np.clip(np.asarray(index), 0, len(branches) - 1))]()
    if not is_soft(index):
        kinds = functools.reduce(joined, [kinds_after(branch, avals) for branch in run])
        outs = _exact_switch(self, unwrap(index), branches, operands, kinds, avals)
        return decode_all(outs, kinds, avals)
    categorical = bernoulli(index) if isinstance(index, SoftBool) else index
    assert isinstance(categorical, Categorical)
    if (joint := categorical.__dict__.get("_joint")) is not None:
        # A truth value of joint outcomes not known at trace time, made an integer (`if q[t] ==
        # q[t - 1]` under jit): over those outcomes, so that the results stay joined with
        # what else they decide (the run counted so far), not over False and True.
        cands = jnp.asarray(joint.cands).astype(aval(eqn.invars[0]).dtype)
        categorical = Categorical(cands, joint.probs, joint.hard, joint.factors)
    if categorical.probs.ndim != 1:
        raise self.unsupported(
            eqn, "its index holds a batch of distributions", "vmap the relaxed function"
        )
    n = len(branches)
    # One weight array per branch, never sliced out of a stack (see _branch._blend_trees).
    weights = case_weights(categorical, n)
    self.record(eqn, "sf.soft_if" if n == 2 else "sf.soft_switch")
    results = [branch() for branch in run]
    outs = []
    for position, out_aval in enumerate(avals):
        values = [r[position] for r in results]
        if floating(out_aval):
            branch_values = [unwrap(v) for v in values]
            if n == 2:  # (an array may hold inf or -inf where one branch has not written)
                x0, x1 = branch_values
                blended = blend_with_infinities(weights[1], x1, x0, self.options.softness)
            else:
                blended = select_by_weights(weights, branch_values)
            taken = _taken_branch(categorical, weights, n) if self.options.debug else None
            blended = self.checked_blend(eqn, blended, branch_values, taken)
            if isinstance(index, Categorical):  # (the branches of each outcome: an elif ladder)
                out = chosen_per_outcome(index, values, out_aval.shape, blended)
            else:
                out = Live(blended)
            if n == 2 and "_compared" in index.__dict__:  # (if u > c: u = c, a clip)
                atoms = [b.jaxpr.outvars[position] for b in branches]
                out = dataclasses.replace(out, clamp=select_clamp(self, index, values, atoms))
            outs.append(out)
        elif out_aval.dtype == jnp.bool_ and any(is_soft(v) for v in values):
            probs = [mean(v).astype(weights[0].dtype) for v in values]
            outs.append(SoftBool(select_by_weights(weights, probs), None))
        elif any(isinstance(v, Expected) for v in values):
            means = [mean(v).astype(weights[0].dtype) for v in values]
            outs.append(Expected(select_by_weights(weights, means), None))
        else:
            # Per outcome of the index, the chosen branch's result: the integers a branch
            # returns together (a search's new bounds) stay joined through the index.
            outs.append(_selected_per_candidate(categorical, values, n, out_aval))
    return outs


def _selected_per_candidate(index: Categorical, values: list, n: int, out_aval) -> Categorical:
    """A branch's integer result where some branches give a distribution: for each joint outcome
    of the index and the results, the result of the branch the index chooses. A result computed
    from the same distribution as the index (a program counter and the opcode it fetches) stays
    joined with it outcome by outcome."""
    soft = [index] + [
        bernoulli(v) if isinstance(v, SoftBool) else v
        for v in values
        if isinstance(v, SoftBool | Categorical)
    ]
    probs, cands, factors = merge(soft)
    k = probs.shape[-1]
    shape = (*out_aval.shape, k)
    soft_iter = iter(cands[1:])
    branch_cands = [
        next(soft_iter)
        if isinstance(v, SoftBool | Categorical)
        else np.expand_dims(v, -1)
        if not isinstance(v, Live) and is_concrete(v)
        else jnp.expand_dims(jnp.asarray(unwrap(v)), -1)
        for v in values
    ]
    # Candidates known at trace time stay known (a loop carries them with a static range).
    xp = np if is_concrete([cands, branch_cands]) else jnp
    dtype = out_aval.dtype
    stacked = xp.stack([xp.broadcast_to(xp.asarray(c, dtype), shape) for c in branch_cands])
    chosen = xp.broadcast_to(xp.clip(xp.asarray(cands[0]), 0, n - 1), shape)
    picked = stacked[0]
    for j in range(1, len(branch_cands)):
        picked = xp.where(chosen == j, stacked[j], picked)
    return Categorical(picked, probs, None, factors)


def _taken_branch(index: Categorical, weights: list, n: int) -> jax.Array:
    """The branch the exact program takes (the most probable one when its index was lost)."""
    if index.hard is None:
        return jnp.argmax(jnp.stack(weights, axis=-1), axis=-1)
    return jnp.clip(jnp.asarray(index.hard(), jnp.int32), 0, n - 1)


def _exits_marker(body: Jaxpr) -> JaxprEqn | None:
    """The ``softflow_loop_exits`` equation that makes a loop body's outputs, if any."""
    for eqn in body.eqns:
        named = _jaxpr.is_call(eqn) and _jaxpr.call_name(eqn) == EXITS_NAME
        if named and list(eqn.outvars) == list(body.outvars):
            return eqn
    return None


# An exact integer or boolean of a relaxed while loop: exact in each run of the loop, carried as a
# float so that the result can be the expectation over the step at which the loop stops.
PATH = Kind("path")
# The most stopping slots (steps times exits) over which such integers are kept as
# distributions; beyond, they are known by their expected values.
_MAX_SLOTS = 1024


def _record_carried_apart(self: Interpreter, eqn: JaxprEqn, kinds, avals) -> None:
    """Say in ``explain`` where a loop carries its relaxed integers one by one: the result is
    then an approximation (mean field) that an unrolled loop does not make."""
    if (states := carried_apart(kinds, avals)) is not None:
        self.record(
            eqn,
            f"relaxed integers carried one by one ({states} joint values, more than "
            f"{MAX_JOINT_STATES}): independent of one another after each pass (unroll=True "
            "keeps their joint law in a Python loop)",
        )


@rule("while")
def _while_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    layout = _jaxpr.while_loop(eqn)
    cn, bn = layout.cond_nconsts, layout.body_nconsts
    cond_consts, body_consts, init = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
    avals = [aval(v) for v in eqn.outvars]
    max_steps = self.options.max_steps
    bound_by_counter = max_steps is None
    if bound_by_counter:  # a counter with a bound in the condition bounds the loop
        max_steps = counted_steps(
            layout.cond.jaxpr,
            layout.body.jaxpr,
            [None if is_soft(c) else unwrap(c) for c in cond_consts],
            bn,
            [None if is_soft(v) else unwrap(v) for v in init],
        )

    def cond(state):
        return self.run_closed(layout.cond, [*cond_consts, *state])[0]

    def body(state):
        return self.run_closed(layout.body, [*body_consts, *state])

    # A body that ends in softflow_loop_exits (a Python loop with a break, converted) exits in its
    # middle: run up to the marker, which gives each exit's condition and state in the world
    # where the loop still runs, and the state at the end of the body. The last carry is the
    # "has broken" flag, False in that world.
    body_jaxpr = layout.body.jaxpr
    marker = _exits_marker(body_jaxpr)
    n_state = len(avals) - 1
    n_exits = 0 if marker is None else (len(marker.invars) - n_state) // (n_state + 1)
    parts = (
        None
        if marker is None
        else _jaxpr.truncated(
            body_jaxpr, [e for e in body_jaxpr.eqns if e is not marker], marker.invars
        )
    )

    def body_parts(state) -> tuple[list, list[list], list]:
        """The exits' conditions, the exits' states and the state at the end of the body."""
        assert parts is not None
        values = self.run(parts, layout.body.consts, [*body_consts, *state])
        conds, flat = values[:n_exits], values[n_exits:]
        running = jnp.bool_(False)
        exits = [[*flat[i * n_state : (i + 1) * n_state], running] for i in range(n_exits)]
        return conds, exits, [*flat[n_exits * n_state :], running]

    def analyse_with(steps):
        if marker is None:
            kinds, _ = carry_kinds(body, init, avals, steps=steps, precise=self.precise_loops)
            soft_exit = False
        else:
            kinds, soft_exit = exit_loop_kinds(
                body_parts, init, avals, steps=steps, precise=self.precise_loops
            )
        decoded = decode_all(encode_all(init, kinds, avals), kinds, avals)
        (condition,) = kinds_after(lambda: [cond(decoded)], [jax.ShapeDtypeStruct((), bool)])
        return kinds, condition.soft or soft_exit

    def analyse():
        # A relaxed loop runs at most max_steps times, which bounds the range of its integers;
        # a loop that turns out exact may run any number of times, unless its condition caps a
        # counter.
        steps = max_steps
        kinds, soft = analyse_with(steps)
        if self.precise_loops and steps is not None and not soft and not bound_by_counter:
            kinds, soft = analyse_with(None)
        return kinds, soft

    kinds, soft = self.analysed(eqn, invals, analyse)
    _record_carried_apart(self, eqn, kinds, avals)
    if not soft:
        # An exact condition (a loop counter): an exact loop whose body is relaxed.
        def exact_cond(x):
            return unwrap(cond(decode_all(x, kinds, avals, joint=True)))

        def exact_body(x):
            state = decode_all(x, kinds, avals, joint=True)
            return encode_all(body(state), kinds, avals, joint=True)

        init_state = encode_all(init, kinds, avals, joint=True)
        if bound_by_counter and max_steps is not None and only_compared(layout.cond.jaxpr):
            # Exactly max_steps passes (the condition is the counter's alone): a scan of them,
            # which reverse mode differentiates (the while loop it is, not). (With another
            # conjunct, an early stop would leave the rest of the passes to run idle.)
            def step(x, _):
                return jax.lax.cond(exact_cond(x), exact_body, lambda x: x, x), None

            init_state = [jnp.asarray(x) for x in init_state]
            outs, _ = jax.lax.scan(step, init_state, None, length=max_steps)
        else:
            outs = jax.lax.while_loop(exact_cond, exact_body, init_state)
        return decode_all(outs, kinds, avals, joint=True)
    if aval(layout.cond.jaxpr.outvars[0]).shape != ():
        raise self.unsupported(
            eqn,
            "its relaxed condition is a batch of truth values (jax.vmap of the loop inside the "
            "relaxed function), and a soft loop stops on one",
            "vmap the relaxed function, jax.vmap(sf.relax(fn, ...)), so that each loop "
            "of the batch is relaxed on its own",
        )
    if max_steps is None:
        raise RelaxError(
            f"sf.relax: the while loop at {self.where(eqn)} has a relaxed condition, so it becomes "
            "a soft_while (a mixture over the step at which it stops), which needs a bound: pass "
            "max_steps=N to sf.relax (the most iterations the loop may run), cap a counter in "
            "the condition, (i < N) & ..., or keep the loop's condition exact with sf.exact."
        )
    # In each run of the loop the exact integers are exact; they are carried as floats so that the
    # result can be the expectation over the exit step.
    state_kinds = [k if floating(a) or k.soft else PATH for k, a in zip(kinds, avals, strict=True)]
    plain_kinds = [DEAD if k == PATH else k for k in state_kinds]

    def to_state(values):
        encoded = encode_all(values, plain_kinds, avals, joint=True)
        return [
            x.astype(default_float()) if k == PATH else x
            for x, k in zip(encoded, state_kinds, strict=True)
        ]

    def from_state(x):
        decoded = decode_all(x, plain_kinds, avals, joint=True)
        return [
            Live(v.astype(a.dtype)) if k == PATH else d
            for v, d, k, a in zip(x, decoded, state_kinds, avals, strict=True)
        ]

    n = len(avals)
    # An exact integer of the loop is one value per step at which the loop may stop (and per exit
    # there). Each state carries a one-hot of its slot, whose mixture is the slot's probability;
    # the running state records each slot's value as the loop reaches it (not mixed), so it is
    # known also where the forward weight is 0 (straight-through) but its tangent is not.
    counters = [
        i
        for i, (k, a, var) in enumerate(zip(state_kinds, avals, eqn.outvars, strict=True))
        if k == PATH and a.dtype != jnp.bool_ and not isinstance(var, DropVar)
    ]
    slots = (max_steps + 1) * (n_exits + 1)
    if slots > _MAX_SLOTS:
        counters = []

    def slotted(values, slot, record=None):
        """The state of ``values`` with, for the counters, the slot's one-hot and the record of
        the values at the slots reached (``record``: the running one, and the other slots'
        ``(slot, values)`` to add, the exits')."""
        state = to_state(values)
        if not counters:
            return state
        one_hot = jnp.arange(slots) == slot
        if record is None:
            record = ([jnp.zeros((*jnp.shape(state[i]), slots)) for i in counters], [])
        running, others = record
        written = []
        for c, i in enumerate(counters):
            row = running[c]
            for other_slot, other in [*others, (slot, state)]:
                row = jnp.where(jnp.arange(slots) == other_slot, other[i][..., None], row)
            written.append(row.astype(default_float()))
        return [*state, one_hot.astype(default_float()), *written]

    def soft_cond(x):
        return probability(cond(from_state(x[:n])))

    def records(x):
        return ([x[n + 1 + c] for c in range(len(counters))], [])

    def plain_step(t, x):
        return slotted(body(from_state(x[:n])), (t + 1) * (n_exits + 1), records(x))

    def step_with_exits(t, x):
        conds, exits, final = body_parts(from_state(x[:n]))
        probs = [probability(c) for c in conds]
        exit_slots = [t * (n_exits + 1) + 1 + j for j in range(n_exits)]
        exit_states = [to_state(s) for s in exits]
        record = (records(x)[0], list(zip(exit_slots, exit_states, strict=True)))
        at_exit = [
            (p, slotted(s, slot, record))
            for p, s, slot in zip(probs, exits, exit_slots, strict=True)
        ]
        return slotted(final, (t + 1) * (n_exits + 1), record), at_exit

    breaks = "" if marker is None else " with breaks"
    self.record(eqn, f"sf.soft_while{breaks} (max_steps={max_steps})")
    outs, info, last = _soft_while(
        lambda t, x: soft_cond(x),
        plain_step if marker is None else step_with_exits,
        slotted(init, 0),
        max_steps=max_steps,
        tol=1e-6,
        semantics="halting",
        chunk_size=None,
        return_info=True,
        exits=marker is not None,
        last_state=True,
    )
    outs, extra = outs[:n], outs[n:]
    # (The counters' values come from the last states: checked too, or jit drops the check.)
    counted = [last[n + 1 + c] for c in range(len(counters))]
    outs, extra = _check_stopped(self, eqn, [outs, extra], info.remaining_mass, max_steps)
    if counted:
        remaining = jax.lax.stop_gradient(info.remaining_mass)
        counted = _check_stopped(self, eqn, counted, remaining, max_steps)
    outs = _check_finite(self, eqn, invals, outs)
    result = []
    out_kinds = [DEAD if k == PATH else LIVE if k.name == "dead" else k for k in state_kinds]
    decoded = decode_all(outs, out_kinds, avals, joint=True)
    for x, d, k, a in zip(outs, decoded, state_kinds, avals, strict=True):
        if k != PATH:
            result.append(d)
        elif a.dtype == jnp.bool_:
            result.append(SoftBool(x, None))
        else:
            result.append(Expected(x, None))
    if counters:
        weights = extra[0]
        for c, i in enumerate(counters):
            cands = jax.lax.stop_gradient(counted[c]).astype(avals[i].dtype)
            result[i] = Categorical(cands, weights, None)
    return result


def _check_stopped(self: Interpreter, eqn: JaxprEqn, outs: list, remaining, steps: int) -> list:
    """The loop's results; an error at run time when it was cut at ``max_steps`` while still
    running: in straight-through mode whenever the exact loop had not stopped (its value would be
    that of a truncated program), in debug mode also when more than 0.1 % of the soft loop's
    mass was still running."""
    mode = self.options.mode
    if mode == "straight_through":
        cut = remaining > 0
    elif self.options.debug:
        cut = remaining > 1e-3
    else:
        return outs
    return eqx.error_if(
        outs,
        jnp.any(cut),
        f"sf.relax: the relaxed while loop at {self.where(eqn)} had not stopped after "
        f"max_steps={steps} iterations (in {mode} mode), so its result is that of a program cut "
        "short: pass a larger max_steps to sf.relax.",
    )


def _check_finite(self: Interpreter, eqn: JaxprEqn, invals: list, outs: list) -> list:
    """The loop's results; in debug mode an error at run time where one is not finite although
    the exact loop's is: the soft loop ran its body past the step where the exact loop stops, on
    a state where the body is not finite (a secant step's 0 / 0 once it has converged)."""
    if not self.options.debug:
        return outs
    try:
        exact = _jaxpr.bind(eqn, [hard_of(v) for v in invals])
    except RelaxError:  # inside a relaxed loop or branch: no exact value to compare with
        return outs
    leaks = [
        jnp.any(~jnp.isfinite(out) & jnp.isfinite(jnp.asarray(ref, out.dtype)))
        for out, ref in zip(outs, exact, strict=True)
        if jnp.shape(out) == jnp.shape(ref) and jnp.issubdtype(out.dtype, jnp.floating)
    ]
    if not leaks:
        return outs
    return eqx.error_if(
        outs,
        functools.reduce(jnp.logical_or, leaks),
        f"sf.relax(debug=True): the relaxed while loop at {self.where(eqn)} is not finite where "
        "the exact loop is: the soft loop goes on with some probability after the exact one "
        "stops, and its body is not finite there (a division by a difference that reached 0 "
        "once the iteration converged). Keep a convergence test exact with sf.exact(...), or "
        "use a softness well below the test's tolerance.",
    )


@rule("scan")
def _scan_rule(self: Interpreter, eqn: JaxprEqn, invals: list) -> list:
    layout = _jaxpr.scan(eqn)
    nc, ncarry = layout.num_consts, layout.num_carry
    consts, init, xs = invals[:nc], invals[nc : nc + ncarry], invals[nc + ncarry :]
    carry_avals = [aval(v) for v in eqn.outvars[:ncarry]]
    y_avals = [aval(v) for v in eqn.outvars[ncarry:]]
    if layout.length == 0:  # no step: the carry as it came in, and no outputs
        return [*init, *(jnp.zeros(a.shape, a.dtype) for a in y_avals)]
    x_avals = [aval(v) for v in layout.body.jaxpr.invars[nc + ncarry :]]
    x_kinds = [kind_of(v, a) for v, a in zip(xs, x_avals, strict=True)]
    # A relaxed integer of xs whose values have no static range (a rounded input) is scanned
    # with its candidates: each step reads its own distribution, as on concrete values.
    with_candidates = [
        isinstance(v, Categorical) and k == INT for v, k in zip(xs, x_kinds, strict=True)
    ]
    xs_x = [
        (jnp.asarray(v.cands), jnp.broadcast_to(v.probs, np.shape(v.cands))) if scanned else encoded
        for v, scanned, encoded in zip(
            xs, with_candidates, encode_all(xs, x_kinds, x_avals), strict=True
        )
    ]

    def decode_xs(slices) -> list:
        return [
            Categorical(x[0], x[1], None) if scanned else decode(x, k, a)
            for x, scanned, k, a in zip(slices, with_candidates, x_kinds, x_avals, strict=True)
        ]

    def x_slices() -> list:
        """Abstract slices of xs, to trace the body for the kinds of carry and outputs: a slice
        known at trace time is made opaque, as it is in the loop, where each step reads its own
        (the first slice alone would hide the values that later ones lead to)."""
        return decode_xs(
            [jax.tree_util.tree_map(lambda a: jax.lax.optimization_barrier(a[0]), x) for x in xs_x]
        )

    def step(carry, x_values):
        return self.run_closed(layout.body, [*consts, *carry, *x_values])

    def analyse():
        kinds, y_kinds = carry_kinds(
            lambda c: step(c, x_slices()),
            init,
            carry_avals,
            y_avals,
            steps=layout.length,
            precise=self.precise_loops,
        )
        unread = [self.unread(v) for v in eqn.outvars[:ncarry]]
        found = saturated_kinds(kinds, layout.body, consts, unread)
        for k in found:
            if k.saturated:
                self.record(eqn, f"an integer carried over {k.lo}..{k.hi} (alike from {k.hi} on)")
        return found, y_kinds

    kinds, y_kinds = self.analysed(eqn, invals, analyse)
    _record_carried_apart(self, eqn, kinds, carry_avals)

    def body(c, x):
        outs = step(decode_all(c, kinds, carry_avals, joint=True), decode_xs(x))
        new_c = encode_all(outs[:ncarry], kinds, carry_avals, joint=True)
        return new_c, encode_all(outs[ncarry:], y_kinds, y_avals)

    carry, ys = jax.lax.scan(
        body,
        encode_all(init, kinds, carry_avals, joint=True),
        xs_x,
        length=layout.length,
        reverse=layout.reverse,
        unroll=layout.unroll,
    )
    carry = decode_all(carry, kinds, carry_avals, joint=True)
    return [*carry, *decode_all(ys, y_kinds, y_avals)]
