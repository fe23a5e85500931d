"""Which gradient to trust: the gradient estimators of one program, measured side by side.

:func:`gradient_check` takes a program and a point, and measures every way softflow has of
differentiating it (autodiff of the exact program, the relaxed program, straight-through, and the
smoothed program at several sample counts) against a high-sample estimate of the gradient of the
smoothed objective, in direction (cosine similarity), spread (variance over repeated draws) and
cost (program evaluations, and time against one exact run).
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.typing import ArrayLike

from ._checks import check_choice, check_int
from ._program import relax
from ._smooth import ESTIMATORS, Estimator, _check_argnums, smooth


class EstimatorReport(NamedTuple):
    """One row of a :class:`GradientCheck`: how one gradient estimator did.

    Attributes:
        name: the estimator, as shown in the table.
        evaluations: program evaluations per gradient (``None`` for a gradient of another
            program: the relaxed one).
        seconds: the wall time of one gradient, jitted, after compilation (the fastest of the
            timed calls).
        cost: ``seconds`` divided by the time of one exact run of the program.
        cosine: the cosine similarity with the reference, averaged over the repeats (a zero
            gradient points nowhere and counts as 0).
        cosine_std: its standard deviation over the repeats (0 for a deterministic gradient).
        variance: :math:`\\mathbb{E}\\lVert \\hat g - \\bar g\\rVert^2 / \\lVert g_\\mathrm{ref}
            \\rVert^2`, the spread of the estimates relative to the reference's size.
        rms_error: :math:`\\sqrt{\\mathbb{E}\\lVert \\hat g - g_\\mathrm{ref}\\rVert^2} /
            \\lVert g_\\mathrm{ref}\\rVert`, how far one gradient is from the reference (bias and
            noise together).
        failure: why the estimator could not run (``sf.relax`` refused the program, JAX cannot
            differentiate it), else ``None``.
    """

    name: str
    evaluations: int | None
    seconds: float
    cost: float
    cosine: float
    cosine_std: float
    variance: float
    rms_error: float
    failure: str | None = None


class GradientCheck(NamedTuple):
    """The result of :func:`gradient_check`; ``str()`` of it is a table.

    Attributes:
        reference: the reference gradient (the smoothed objective's, from ``reference_samples``
            antithetic evaluations), with the structure of the differentiated arguments.
        reference_samples: the evaluations it used.
        reference_error: its own relative standard error, :math:`\\sqrt{\\mathrm{tr}\\,
            \\mathrm{Cov}} / \\lVert g_\\mathrm{ref} \\rVert`: cosines closer to 1 than this
            allows cannot be told apart.
        scale: the smoothing scale (a NumPy array).
        exact_seconds: the time of one exact run of the program (jitted; the fastest of the
            timed calls).
        rows: one :class:`EstimatorReport` per estimator.
    """

    reference: Any
    reference_samples: int
    reference_error: float
    scale: np.ndarray
    exact_seconds: float
    rows: tuple[EstimatorReport, ...]
    smoothed: dict[str, Callable]

    def row(self, name: str) -> EstimatorReport:
        """The row whose name starts with ``name``."""
        for r in self.rows:
            if r.name.startswith(name):
                return r
        raise KeyError(f"no row named {name!r}; the rows are {[r.name for r in self.rows]}")

    def __str__(self) -> str:
        header = (
            f"gradient check at scale {np.array2string(np.asarray(self.scale), precision=4)}: "
            "reference = antithetic smoothing, "
            f"{self.reference_samples} evaluations (relative standard error "
            f"{self.reference_error:.3f}); one exact run {self.exact_seconds * 1e6:.0f} µs"
        )
        columns = f"{'estimator':34} {'evals':>6} {'cost':>8} {'cosine':>15} {'variance':>9} "
        lines = [header, columns + f"{'rms error':>9}"]
        notes = []
        for r in self.rows:
            if r.failure is not None:
                notes.append(f"{r.name}: {r.failure}")
                lines.append(f"{r.name:34} {'—':>6} {'—':>8} {'fails (see below)':>15}")
                continue
            evals = "—" if r.evaluations is None else str(r.evaluations)
            cosine = f"{r.cosine:.3f} ± {r.cosine_std:.3f}" if r.cosine_std else f"{r.cosine:.3f}"
            numbers = f"{r.cost:8.1f} {cosine:>15} {r.variance:9.3g} {r.rms_error:9.3f}"
            lines.append(f"{r.name:34} {evals:>6} {numbers}")
        lines.append("cost: time of one gradient / time of one exact run (measured here)")
        return "\n".join(lines + notes)


def _seconds(call: Callable[[], Any], calls: int) -> float:
    """The fastest of ``calls`` calls (after a warm one): the one least slowed by other work."""
    jax.block_until_ready(call())
    times = []
    for _ in range(calls):
        tick = time.perf_counter()
        jax.block_until_ready(call())
        times.append(time.perf_counter() - tick)
    return min(times)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``a`` (repeats, n) with ``b`` (n,); 0 where a row is zero."""
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b)
    dots = a @ b
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)


def _report(name, evaluations, estimates, reference, seconds, exact_seconds) -> EstimatorReport:
    estimates = np.atleast_2d(np.asarray(estimates, np.float64))
    cosines = _cosine(estimates, reference)
    mean = estimates.mean(axis=0)
    size = float(np.sum(reference**2))
    repeats = len(estimates)
    spread = np.sum((estimates - mean) ** 2) / max(repeats - 1, 1) if repeats > 1 else 0.0
    return EstimatorReport(
        name=name,
        evaluations=evaluations,
        seconds=seconds,
        cost=seconds / exact_seconds,
        cosine=float(cosines.mean()),
        cosine_std=float(cosines.std(ddof=1)) if repeats > 1 else 0.0,
        variance=float(spread / size),
        rms_error=float(np.sqrt(np.mean(np.sum((estimates - reference) ** 2, axis=-1)) / size)),
    )


def _failed(name: str, evaluations: int | None, error: Exception) -> EstimatorReport:
    message = f"{type(error).__name__}: {str(error).splitlines()[0]}"
    nan = float("nan")
    return EstimatorReport(name, evaluations, nan, nan, nan, nan, nan, nan, message)


def gradient_check(
    fn: Callable,
    *args: Any,
    key: jax.Array,
    scale: ArrayLike,
    samples: Sequence[int] = (16, 256),
    estimators: Sequence[str] = ("antithetic",),
    reference_samples: int = 8192,
    repeats: int = 16,
    relax_options: Mapping[str, Any] | None = None,
    gradients: Mapping[str, Callable] | None = None,
    argnums: int | tuple[int, ...] = 0,
    timing_calls: int = 3,
) -> GradientCheck:
    r"""Measure the gradient estimators of a program against the smoothed objective's gradient.

    At the point ``args``, for the scalar program ``fn``, compares:

    * autodiff of the exact program, ``jax.grad(fn)`` (zero across the flat steps of a program
      that jumps, an error for a ``while`` loop);
    * the relaxed program's gradient, ``jax.grad(sf.relax(fn, **relax_options))``, and the
      straight-through one (``mode="straight_through"``), when ``relax_options`` is given; a
      program that ``relax`` refuses gets a row with the error;
    * any other gradient functions given in ``gradients`` (for example a program relaxed in
      parts, or a gradient already jitted for an optimisation, which is then not compiled again);
    * :func:`softflow.smooth` with each of ``estimators`` at each of ``samples``,

    with the reference :math:`g_\mathrm{ref}`, an antithetic estimate of
    :math:`\nabla_x \mathbb{E}\,f(x + \sigma\varepsilon)` from ``reference_samples`` evaluations.
    Each row reports the mean cosine similarity :math:`\langle \hat g, g_\mathrm{ref}\rangle /
    (\lVert \hat g\rVert\,\lVert g_\mathrm{ref}\rVert)` over ``repeats`` independent estimates,
    the relative variance :math:`\mathbb{E}\lVert \hat g - \bar g\rVert^2 / \lVert
    g_\mathrm{ref}\rVert^2`, the relative root-mean-square error, the program evaluations per
    gradient and the measured time of one gradient in exact runs of the program. The relaxed
    gradient is that of a different (relaxed) objective, so its cosine says how well it points
    along the smoothed one's; it is not expected to be 1.

    Each smoothed estimator is compiled once, as a jitted gradient from :math:`n_0` samples
    (:math:`n_0` the smallest of ``samples``), returned in ``smoothed`` for reuse. An estimate
    from :math:`N` samples is the mean of :math:`N / n_0` independent such estimates, which for
    the antithetic, pathwise and plain score estimators *is* the :math:`N`-sample estimator (for
    ``"score"``, whose baseline is the mean of the other samples, the baseline is taken within
    each block of :math:`n_0`), and its time is :math:`N / n_0` times that of one call. The
    reference is the mean of antithetic blocks too. A program that runs in microseconds is timed
    mostly as JAX's dispatch: then the evaluation counts are the better guide.

    Arguments:
        fn: a JAX function returning a scalar (jitted here for timing, unless it already is).
        *args: the point: ``fn``'s positional arguments.
        key: a JAX random key for the perturbations.
        scale: :math:`\sigma`, the smoothing scale (see :func:`softflow.smooth`).
        samples: the sample counts of the smoothed rows, multiples of the smallest (even
            numbers for the antithetic rows).
        estimators: the estimators of the smoothed rows, from :data:`softflow.ESTIMATORS`.
        reference_samples: evaluations of the reference (rounded up to a multiple of
            :math:`n_0`).
        repeats: independent estimates per random row (their spread gives the variance).
        relax_options: keyword arguments of :func:`softflow.relax` (``softness``,
            ``max_steps``, ...) for the relaxed and straight-through rows; ``None`` leaves them out.
        gradients: more rows: name -> a function called as ``g(*args)`` that returns the gradient
            with respect to the ``argnums`` arguments (as ``jax.grad(fn, argnums)`` does).
        argnums: the arguments differentiated and smoothed, as in :func:`softflow.smooth`.
        timing_calls: calls timed per row (the fastest is reported: the least disturbed by
            other work on the machine).

    Returns:
        A :class:`~softflow._gradient_check.GradientCheck`: the reference and one
        :class:`~softflow._gradient_check.EstimatorReport` per row; printing it shows a table.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import softflow as sf
        >>> def cost(x):
        ...     return jnp.sum(jnp.floor(4 * x) ** 2)  # piecewise constant: jax.grad is zero
        >>> check = sf.gradient_check(
        ...     cost, jnp.array([0.3, -0.6]), key=jax.random.key(0), scale=0.2,
        ...     samples=(16, 256), relax_options={"softness": 0.1}, timing_calls=1)
        >>> [row.name for row in check.rows]  # doctest: +NORMALIZE_WHITESPACE
        ['exact program (jax.grad)', 'relaxed (sf.relax)', 'straight-through (sf.relax)',
         'antithetic, N=16', 'antithetic, N=256']
        >>> check.row("exact").cosine, check.row("antithetic, N=256").cosine > 0.9
        (0.0, True)
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable; got {fn!r} of type {type(fn).__name__}.")
    numbers = _check_argnums(argnums)
    if max(numbers) >= len(args):
        raise ValueError(
            f"argnums {argnums!r} refers to positional argument {max(numbers)}, but "
            f"{len(args)} argument(s) were given."
        )
    if isinstance(samples, int) or not samples:
        raise TypeError(f"samples must be a non-empty sequence of ints; got {samples!r}.")
    samples = tuple(sorted({check_int("samples", n, minimum=1) for n in samples}))
    base = samples[0]
    if any(n % base for n in samples):
        raise ValueError(
            f"samples must be multiples of the smallest ({base}); got {samples}: an estimate "
            "from N samples is measured as the mean of N / smallest estimates."
        )
    if isinstance(estimators, str) or not estimators:
        raise TypeError(f"estimators must be a non-empty sequence of names; got {estimators!r}.")
    for name in estimators:
        check_choice("estimators", name, ESTIMATORS)
    if base % 2:
        raise ValueError(f"the smallest of samples must be even (antithetic pairs); got {base}.")
    repeats = check_int("repeats", repeats, minimum=2)
    check_int("reference_samples", reference_samples, minimum=1)
    timing_calls = check_int("timing_calls", timing_calls, minimum=1)
    if gradients is not None and not all(callable(g) for g in dict(gradients).values()):
        raise TypeError("gradients must map names to gradient functions g(*args).")
    output = jax.eval_shape(fn, *args)
    if not (isinstance(output, jax.ShapeDtypeStruct) and output.shape == ()):
        raise ValueError(f"fn must return a scalar to be differentiated; it returns {output}.")

    diff_args = tuple(args[n] for n in numbers)
    single = isinstance(argnums, int)

    def with_args(diff):
        full = list(args)
        for n, value in zip(numbers, diff, strict=True):
            full[n] = value
        return full

    def flat(gradient) -> jax.Array:
        return ravel_pytree(gradient)[0]

    exact_run = fn if hasattr(fn, "lower") else jax.jit(fn)  # a jitted fn is not compiled again
    exact_seconds = _seconds(lambda: exact_run(*args), max(timing_calls, 5))

    def smoothed_gradient(estimator: str) -> Callable:
        smoothed = smooth(
            fn, scale=scale, samples=base, argnums=numbers, estimator=cast(Estimator, estimator)
        )
        return jax.jit(lambda *a, key: jax.grad(smoothed, argnums)(*a, key=key))

    def draw(gradient: Callable, key: jax.Array, count: int) -> np.ndarray:
        """``count`` independent estimates from ``base`` samples each, flat: (count, size)."""
        # fold_in compiles once; a split into ``count`` keys would compile for every count.
        keys = (jax.random.fold_in(key, i) for i in range(count))
        return np.stack([np.asarray(flat(gradient(*args, key=k))) for k in keys]).astype(np.float64)

    key_reference, key_rows = jax.random.split(key)
    built = {"antithetic": smoothed_gradient("antithetic")}
    reference_draws = draw(built["antithetic"], key_reference, -(-reference_samples // base))
    reference = reference_draws.mean(axis=0)
    size = np.linalg.norm(reference)
    spread = reference_draws.var(axis=0, ddof=1).sum() / len(reference_draws)
    reference_error = float(np.sqrt(spread) / size) if size > 0 else float("inf")

    def grad_of(program):
        return jax.jit(lambda *a: jax.grad(program, argnums)(*a))

    deterministic: list[tuple[str, Callable, int | None]] = [
        ("exact program (jax.grad)", grad_of(fn), 1)
    ]
    if relax_options is not None:
        options = dict(relax_options)
        straight = {**options, "mode": "straight_through"}
        deterministic += [
            ("relaxed (sf.relax)", grad_of(relax(fn, **options)), None),
            ("straight-through (sf.relax)", grad_of(relax(fn, **straight)), None),
        ]
    deterministic += [(name, g, None) for name, g in dict(gradients or {}).items()]

    rows = []
    for name, gradient, evaluations in deterministic:
        try:
            estimate = flat(gradient(*args))
        except Exception as error:  # reported in the row: the point of the check
            rows.append(_failed(name, evaluations, error))
            continue
        seconds = _seconds(lambda g=gradient: g(*args), timing_calls)
        rows.append(_report(name, evaluations, estimate, reference, seconds, exact_seconds))

    blocks = samples[-1] // base
    for index, estimator in enumerate(estimators):
        try:
            if estimator not in built:
                built[estimator] = smoothed_gradient(estimator)
            gradient = built[estimator]
            draws = draw(gradient, jax.random.fold_in(key_rows, index), repeats * blocks)
        except Exception as error:  # reported in the rows
            rows += [_failed(f"{estimator}, N={n}", n, error) for n in samples]
            continue
        draws = draws.reshape(repeats, blocks, -1)
        timing_key = jax.random.fold_in(key_rows, len(estimators) + index)
        call_seconds = _seconds(lambda g=gradient, k=timing_key: g(*args, key=k), timing_calls)
        for n in samples:
            rows.append(
                _report(
                    f"{estimator}, N={n}",
                    n,
                    draws[:, : n // base].mean(axis=1),  # each the mean of n / base blocks
                    reference,
                    call_seconds * n / base,
                    exact_seconds,
                )
            )

    flat_args, unravel = ravel_pytree(diff_args)
    reference_tree = unravel(jnp.asarray(reference, flat_args.dtype))
    return GradientCheck(
        reference=reference_tree[0] if single else reference_tree,
        reference_samples=len(reference_draws) * base,
        reference_error=reference_error,
        scale=np.asarray(scale),
        exact_seconds=exact_seconds,
        rows=tuple(rows),
        smoothed=built,
    )
