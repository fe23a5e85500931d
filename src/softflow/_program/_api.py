"""The public face of program relaxation: :func:`relax` and the :class:`Relaxed` function."""

import dataclasses
import functools
import inspect
import os
import traceback
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.core import Tracer
from jax.extend.core import jaxpr_as_fun
from jax.typing import ArrayLike

from .._checks import check_choice, check_int, check_traced_softness, softness_array
from .._kinds import KINDS, Kind
from .._logic import TNORMS, TNorm
from .._modes import MODES, Mode, straight_through
from .._scope import SCOPE

# The rule modules fill the interpreter's registry when they are imported.
from . import (  # noqa: F401
    _jaxpr,
    _rules_arrays,
    _rules_calls,
    _rules_control,
    _rules_indexing,
    _rules_logic,
    _rules_masks,
    _rules_relaxed_reads,
    _rules_select,
    _rules_sort,
)
from ._errors import ConversionError, ExpectedIntegerError
from ._explain import Explanation
from ._interpreter import ON_UNRELAXABLE, Interpreter, OnUnrelaxable, Options, output
from ._source import converted_location
from ._syntax import call_converted_with
from ._values import Live, default_float


def _input_leaf(path, leaf) -> jax.Array | int | bool:
    if isinstance(leaf, jax.Array | np.ndarray | np.generic | int | float | bool):
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.complexfloating):
            if isinstance(leaf, int) and type(leaf) in (int, bool):
                return leaf  # a constant of the program (see Relaxed._trace)
            return leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)
    where = jax.tree_util.keystr(path) or "(the argument itself)"
    raise TypeError(
        f"sf.relax: argument leaf {where} is {leaf!r} of type {type(leaf).__name__}; the relaxed "
        "function takes pytrees of real arrays or numbers. Close over other arguments "
        "(functools.partial) instead."
    )


def _concrete(leaves) -> bool:
    """Whether the arguments are concrete, outside any trace that stages every operation
    (``jit``, ``eval_shape``, where even operations on concrete arrays give traced values)."""
    if any(isinstance(leaf, Tracer) for leaf in leaves):
        return False
    return not isinstance(jax.lax.add(np.int32(0), np.int32(0)), Tracer)


# JAX's errors for a traced value used where Python needs a concrete one.
_PYTHON_VALUE_ERRORS = (
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.ConcretizationTypeError,
    jax.errors.NonConcreteBooleanIndexError,
    jax.errors.TracerArrayConversionError,
)


def _python_value_message(name: str, error: BaseException) -> str:
    """What relax says when tracing ``name`` needed a concrete value: where, and how to write
    it with a shape and control flow that do not depend on the values."""
    at = (
        f"sf.relax: {name} {{}} at {_user_line(error)}: the relaxed function is traced (as "
        "under jax.jit), so"
    )
    if isinstance(error, jax.errors.NonConcreteBooleanIndexError):
        return (
            at.format("indexes an array by a traced boolean mask (x[mask])")
            + " the number of elements selected, and so the result's shape, is not known. "
            "Keep the shape: jnp.where(mask, x, 0), or reduce with where= "
            "(jnp.sum(x, where=mask), jnp.mean(x, where=mask), jnp.max(x, where=mask, "
            "initial=-jnp.inf)); relax then relaxes the mask."
        )
    if isinstance(error, jax.errors.TracerArrayConversionError):
        return (
            at.format("converts a traced value to a NumPy array")
            + " it is not a NumPy array there. Use jax.numpy (jnp.asarray, jnp.sum, ...) in "
            "place of numpy on traced values."
        )
    return (
        at.format("uses a traced value as a Python value")
        + " a traced value cannot be a Python bool or index there, as in `assert x > 0`, "
        "`k in (0, 2)` or a Python list indexed by a traced integer. Write it with jax.numpy "
        "(jnp.where, jnp.isin(k, jnp.array([0, 2])), jnp.asarray(table)[k]), or leave the "
        f"check out of the relaxed function. ({type(error).__name__})"
    )


def _traced_slice_message(name: str, error: BaseException) -> str:
    """What relax says when ``name`` slices an array at a traced position (``x[:i]``)."""
    return (
        f"sf.relax: {name} slices an array at a traced position at {_user_line(error)} (such as "
        "x[:i] with i set in a loop that breaks on a traced condition): the slice's length, and "
        "so the result's shape, is not known. Keep the shape: mask by position, "
        "jnp.where(jnp.arange(x.shape[0]) < i, x, 0.0) or jnp.sum(x, where=jnp.arange("
        "x.shape[0]) < i), or read a window of fixed size, jax.lax.dynamic_slice_in_dim(x, i, "
        f"size); relax then relaxes the position. ({error})"
    )


def _user_line(error: BaseException) -> str:
    """The user's line where ``error`` was raised: the innermost line of converted code, else
    the innermost line outside JAX, softflow and the libraries."""
    converted, outside = None, None
    for frame, line in traceback.walk_tb(error.__traceback__):
        file_name = frame.f_code.co_filename
        converted = converted_location(file_name, line) or converted
        library = any(part in file_name for part in ("site-packages", f"{os.sep}softflow{os.sep}"))
        if not library and not file_name.startswith("<"):
            outside = f"{file_name}:{line} ({frame.f_code.co_name})"
    return converted or outside or "a line of the function"


def _signature(fn: Callable) -> inspect.Signature | None:
    """``fn``'s signature, or None where Python cannot tell it (some builtins)."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _as_array(value) -> jax.Array:
    """An output as an array: a Python number (``return x, 3``) or a jaxpr literal is one too."""
    return value if isinstance(value, jax.Array) else jnp.asarray(value)


class Relaxed:
    """A function relaxed by :func:`relax`: call it like the original; ``explain`` shows how."""

    def __init__(self, fn: Callable, options: Options, convert: bool, unroll: bool | None):
        functools.update_wrapper(self, fn)
        # On concrete arguments, hard mode runs Python's control flow as Python (see __call__).
        self._eager = functools.partial(call_converted_with, fn, True, True) if convert else fn
        self._fn = functools.partial(call_converted_with, fn, unroll, False) if convert else fn
        self._options = options
        self._signature = _signature(fn)
        self._name = getattr(fn, "__qualname__", type(fn).__name__)
        self._cache: dict = {}

    def _check_call(self, args, kwargs) -> None:
        """Arguments that do not fit the function's signature are refused in its name (the
        converted function that would run is a wrapper with another name)."""
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{self._name}() called through sf.relax: {error}") from None

    def _trace(self, args, kwargs):
        """The program's jaxpr for these arguments, its output tree and the arguments it takes.

        A Python ``int`` or ``bool`` argument is a constant of the program, as under ``jit``
        with it static: ``range(k)`` of an integer argument is then a loop of ``k`` steps, which
        reverse mode can differentiate (a traced bound makes it a ``while`` loop, which it
        cannot)."""
        leaves_with_path, in_tree = jax.tree_util.tree_flatten_with_path((args, kwargs))
        given = [_input_leaf(path, leaf) for path, leaf in leaves_with_path]
        static = {n: leaf for n, leaf in enumerate(given) if type(leaf) in (int, bool)}
        leaves = [jnp.asarray(leaf) for n, leaf in enumerate(given) if n not in static]
        avals = [jax.typeof(leaf) for leaf in leaves]
        fn = self._fn
        key = (
            fn,
            in_tree,
            tuple((a.shape, a.dtype, a.weak_type) for a in avals),
            tuple((n, type(v), v) for n, v in static.items()),
        )
        if key in self._cache:
            return (*self._cache[key], leaves)
        out_tree = []

        def flat_fn(*flat):
            traced = iter(flat)
            every = [static[n] if n in static else next(traced) for n in range(len(given))]
            a, k = jax.tree_util.tree_unflatten(in_tree, every)
            out_flat, tree = jax.tree_util.tree_flatten(fn(*a, **k))
            out_tree.append(tree)
            return out_flat

        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=a.weak_type) for a in avals]
        try:
            closed = jax.make_jaxpr(flat_fn)(*shapes)
        except _PYTHON_VALUE_ERRORS as error:
            raise ConversionError(_python_value_message(self._name, error)) from None
        except IndexError as error:
            if "must be static" not in str(error) and "must have static" not in str(error):
                raise
            raise ConversionError(_traced_slice_message(self._name, error)) from None
        if all(not isinstance(c, Tracer) for c in closed.consts):
            # A jaxpr that closes over traced values belongs to the trace that made it.
            self._cache[key] = (closed, out_tree[0])
        return closed, out_tree[0], leaves

    def _interpret(self, options: Options, closed, leaves) -> tuple[list, Interpreter]:
        """The relaxed outputs, and the interpreter that made them (its records for explain)."""

        def live_if_float(x):
            return Live(x) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x

        consts = [live_if_float(c) if isinstance(c, Tracer) else c for c in closed.consts]
        args = [live_if_float(x) for x in leaves]
        interpreter = Interpreter(options)
        try:
            return [output(o) for o in interpreter.run(closed.jaxpr, consts, args)], interpreter
        except ExpectedIntegerError:
            pass
        # An integer known only by its expected value was used as an index or a branch: analyse
        # the loops again, bounding their integers by their trip counts and carrying the ones
        # they change at every step as distributions (costlier, so only where it is needed).
        interpreter = Interpreter(options, precise_loops=True)
        return [output(o) for o in interpreter.run(closed.jaxpr, consts, args)], interpreter

    def __call__(self, *args, **kwargs):
        self._check_call(args, kwargs)
        options = self._options
        tau = None
        if options.mode == "hard":
            tau = softness_array(options.softness, default_float(), np.shape(options.softness))
            if not isinstance(tau, Tracer):
                return self._hard_eager(tau, args, kwargs)
        closed, out_tree, leaves = self._trace(args, kwargs)
        # Inside another relaxed function, this one is already relaxed: a softflow operation.
        with jax.named_scope(SCOPE):
            outs = self._relaxed_outputs(options, tau, closed, leaves, args, kwargs)
        return jax.tree_util.tree_unflatten(out_tree, outs)

    def _relaxed_outputs(self, options: Options, tau, closed, leaves, args, kwargs) -> list:
        if tau is not None:
            outs = [_as_array(o) for o in jaxpr_as_fun(closed)(*leaves)]
            return [check_traced_softness(o, tau) for o in outs]
        if options.mode == "soft" and not options.debug and self._relaxes(options, closed, leaves):
            return self._compiled(options, closed)(*leaves)
        outs = [_as_array(o) for o in self._interpret(options, closed, leaves)[0]]
        if options.mode == "straight_through" and self._concrete_call(options, closed, leaves):
            outs = self._exact_forward(outs, args, kwargs)
        return outs

    @staticmethod
    def _concrete_call(options: Options, closed, leaves) -> bool:
        """Whether nothing the program computes from is traced: concrete arguments, closed-over
        values and softness (an eager call, not under ``jax.grad`` or ``jit``)."""
        return (
            _concrete(leaves)
            and not any(isinstance(c, Tracer) for c in closed.consts)
            and not isinstance(options.softness, Tracer)
        )

    def _exact_forward(self, outs: list, args, kwargs) -> list:
        """The straight-through ``outs`` with the value of the function itself run as Python,
        bit for bit the plain function's (the relaxed program runs its loops rolled, compiled,
        where XLA may contract a multiply and an add), in the dtypes of ``outs``."""
        tau = softness_array(
            self._options.softness, default_float(), np.shape(self._options.softness)
        )
        exact = jax.tree_util.tree_leaves(self._hard_eager(tau, args, kwargs))
        return [straight_through(e.astype(o.dtype), o) for e, o in zip(exact, outs, strict=True)]

    def _relaxes(self, options: Options, closed, leaves) -> bool:
        """Whether the program has a loop and relaxes an operation (found by an abstract trace,
        once per jaxpr): a loop's analysis is what values known at trace time could change; a
        program that relaxes nothing runs as it is, bit for bit, without ``jit``."""
        if any(isinstance(c, Tracer) for c in closed.consts) or not (
            _jaxpr.primitive_names(closed.jaxpr) & {"while", "scan"}
        ):
            # Inside the trace that made the jaxpr nothing is concrete; outside loops, values
            # known at trace time are computed as they would be at run time.
            return False
        key = ("relaxes", id(closed))
        if key not in self._cache:
            relaxed = bool(self._abstract_interpreter(options, closed, leaves).records)
            self._cache[key] = (relaxed, closed)
        return self._cache[key][0]

    def _abstract_interpreter(self, options: Options, closed, leaves) -> Interpreter:
        """The interpreter that relaxed the program traced abstractly (nothing computed)."""
        found: list[Interpreter] = []

        def trace(*x):
            outs, interpreter = self._interpret(options, closed, x)
            found.append(interpreter)
            return outs

        jax.eval_shape(trace, *leaves)
        return found[0]

    def _compiled(self, options: Options, closed) -> Callable:
        """The relaxed program under ``jit``, so that it is relaxed from abstract arguments in
        every call. Interpreted on concrete arguments (or on the tracers of an eager
        ``jax.grad``, which hold concrete values), the integers relaxed from the inputs would
        have candidates known at trace time, and a loop could carry them as distributions where
        under ``jit`` it carries their expected values: eager calls and gradients would not be
        those of the program that ``jit`` relaxes."""
        key = ("compiled", id(closed))
        if key not in self._cache:

            def run(*leaves):
                return [_as_array(o) for o in self._interpret(options, closed, leaves)[0]]

            self._cache[key] = (jax.jit(run), closed)  # (closed: keeps its id taken)
        return self._cache[key][0]

    def _hard_eager(self, tau, args, kwargs):
        """Hard mode with a concrete softness: the function itself, converted, on the arguments
        as arrays. On concrete arrays every ``if`` / ``while`` / ``for`` runs as Python runs it,
        operation by operation, so the result is the plain function's bit for bit (the traced
        program's ``lax.cond`` would be compiled, and XLA may fuse ``a * b + c`` in it into one
        multiply-add). Under ``jit`` it traces the program that the other modes relax."""
        leaves_with_path, in_tree = jax.tree_util.tree_flatten_with_path((args, kwargs))
        leaves = [_input_leaf(path, leaf) for path, leaf in leaves_with_path]
        a, k = jax.tree_util.tree_unflatten(in_tree, leaves)
        fn = self._eager if _concrete(leaves) else self._fn
        flat, out_tree = jax.tree_util.tree_flatten(fn(*a, **k))
        outs = [check_traced_softness(_as_array(o), tau) for o in flat]
        return jax.tree_util.tree_unflatten(out_tree, outs)

    def explain(self, *args, **kwargs) -> Explanation:
        """The operations relaxed for these arguments, each with its source line and rule.

        Traces the function abstractly (nothing is computed) and returns an
        :class:`Explanation`, a tuple of ``RelaxedOp(primitive, source, rule)`` that prints as
        one line per operation. In ``"hard"`` mode it lists what the soft mode relaxes.
        """
        self._check_call(args, kwargs)
        closed, _, leaves = self._trace(args, kwargs)
        options = dataclasses.replace(
            self._options, mode="soft" if self._options.mode == "hard" else self._options.mode
        )
        return Explanation(self._abstract_interpreter(options, closed, leaves).records.values())


def relax(
    fn: Callable,
    *,
    softness: ArrayLike = 1.0,
    kind: Kind = "logistic",
    mode: Mode = "soft",
    tnorm: TNorm = "product",
    max_steps: int | None = None,
    convert: bool = True,
    unroll: bool | None = None,
    on_unrelaxable: OnUnrelaxable = "error",
    debug: bool = False,
) -> Relaxed:
    r"""Relax a whole JAX program: every discontinuity on a floating-point input becomes soft.

    ``relax(fn)`` returns a function with ``fn``'s signature. It traces ``fn`` to a jaxpr (once
    per input shapes and dtypes) and evaluates it with a soft rule for each discontinuous
    operation that depends on a floating-point input: a comparison :math:`x > y` becomes
    :math:`s((x - y)/\tau)` (:func:`greater` and its relatives), ``&``, ``|``, ``~`` become
    t-norm logic, ``jnp.where`` becomes :func:`soft_where`, ``lax.cond`` / ``lax.switch``
    :func:`soft_if` / :func:`soft_switch`, a ``while_loop`` with such a condition
    :func:`soft_while`; loops, nested ``jit``, ``custom_jvp`` / ``custom_vjp`` functions and
    ``checkpoint`` are relaxed inside. Integer inputs, loop counters and constants stay exact.
    A truth value used as a number is its probability, so ``jnp.sum(x > 0)`` is the expected
    count; boolean and integer results that became soft are returned as floats of the default
    float dtype. See the page "Relaxing a whole program" for the rules and their limits.

    The relaxed function is pure JAX: it works under ``jit``, ``vmap`` and ``grad``, and
    ``softness`` may be a traced array (call ``relax`` inside the jitted loss to anneal it).

    Arguments:
        fn: a function of pytrees of arrays, written in plain JAX.
        softness: :math:`\tau > 0`, a scalar passed to every relaxed operation (it may be
            traced; vmap the relaxed function to use several).
        kind: the soft step family, one of :data:`softflow.KINDS`.
        mode: ``"soft"``; ``"hard"``, exactly ``fn``'s result; or ``"straight_through"``, the
            forward value of ``fn`` with the gradient of the soft operations along its path.
        tnorm: the t-norm of ``&``, ``|`` and ``^``, one of :data:`softflow.TNORMS`.
        max_steps: the bound of every ``while`` loop whose condition is relaxed (required when
            there is one, unless its condition caps a counter: ``(i < N) & (err > tol)`` with
            ``i`` starting at a value known at trace time and growing by 1 at each step is
            bounded by ``N`` minus the start).
        convert: convert Python control flow (``if``, ``while``, ``for``, ``and`` / ``or`` /
            ``not``, ``a if c else b``) on traced values in ``fn`` and the functions it calls
            first (see "Python syntax" on the page "Relaxing a whole program"); ``False`` traces
            ``fn`` as it is.
        unroll: how Python ``for`` loops over a static range (or an array's rows) are converted.
            ``None`` (the default): loops of more than 4 iterations become one ``lax.scan``,
            compiled once, where that is the same program (no ``break`` or ``return`` in it,
            the same types in every iteration, the index used as an integer only), and the
            others are unrolled; ``False``: every such loop of 2 or more iterations that can be
            rolled is; ``True``: every loop is unrolled, as Python runs it.
        on_unrelaxable: what to do with a discontinuous operation on a value that depends on a
            floating-point input when relax has no soft rule for it (a float's bits read with
            ``lax.bitcast_convert_type``, ``nextafter``, ...): ``"error"`` (the default) raises a
            :class:`RelaxError` naming it and its line; ``"stop_gradient"`` keeps it exact, so
            the gradient stops there, and ``explain`` lists each such place.
        debug: check at run time (with ``equinox.error_if``, so also under ``jit``) that no NaN
            or inf from a branch the exact program does not take leaks into a relaxed ``where``
            / ``cond`` (the blended-guard pitfall: ``jnp.sqrt(h)`` under ``if h > 0``) or into a
            relaxed ``while`` loop's result (its body run past the exact stop), and that no
            relaxed ``while`` loop still runs with more than 0.1 % of its mass at
            ``max_steps``; the error names the line. (A straight-through loop cut at
            ``max_steps`` before the exact loop stops is an error in every case.)

    Returns:
        The relaxed function. Its ``explain(*args)`` lists every relaxed operation with its
        source line and the rule applied.

    Raises:
        softflow.RelaxError: (when called) for an operation that cannot be relaxed, naming it,
            its source line and what to write instead; for a relaxed ``while`` loop without
            ``max_steps``.
        softflow.ConversionError: (when called) for Python syntax that cannot be converted or
            relaxed, naming its line.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import softflow as sf
        >>> def count_positive(x):
        ...     return jnp.sum(x > 0)
        >>> x = jnp.array([-1.0, 0.5, 2.0])
        >>> int(count_positive(x)), round(float(sf.relax(count_positive)(x)), 3)
        (2, 1.772)
        >>> [round(float(g), 3) for g in jax.grad(sf.relax(count_positive))(x)]
        [0.197, 0.235, 0.105]
    """
    check_choice("kind", kind, KINDS)
    check_choice("mode", mode, MODES)
    check_choice("tnorm", tnorm, TNORMS)
    check_choice("on_unrelaxable", on_unrelaxable, ON_UNRELAXABLE)
    # One softness for every relaxed operation, checked now (positive and finite when it is
    # known): an array would broadcast against each operation's values and add its axes there.
    if np.ndim(softness) != 0:
        raise ValueError(
            f"softness must be a scalar, one softness for every relaxed operation; got shape "
            f"{np.shape(softness)}. To relax with several, jax.vmap the relaxed function over "
            "them (or call sf.relax inside the vmapped function)."
        )
    softness_array(softness, default_float(), ())
    if max_steps is not None:
        check_int("max_steps", max_steps, minimum=1)
    if not callable(fn):
        raise TypeError(f"fn must be a callable; got {fn!r} of type {type(fn).__name__}.")
    for name, flag in (("convert", convert), ("debug", debug)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False; got {flag!r}.")
    if unroll is not None and not isinstance(unroll, bool):
        raise TypeError(f"unroll must be None, True or False; got {unroll!r}.")
    options = Options(softness, kind, mode, tnorm, max_steps, on_unrelaxable, debug)
    return Relaxed(fn, options, convert, unroll)
