"""Typical numerical programs, written the way public JAX / NumPy code writes them, to try
``sf.relax`` on as a user would: interpolation, binning, lookup tables, automata, search,
controllers, hybrid systems, samplers, geometry, root finding, interpreters, physics,
quantisation, sorting and counting.

Each program is our own code in the style of the public code or textbook algorithm named in its
docstring; none is adapted to softflow. :data:`PROGRAMS` lists them with a seeded argument
generator, the positions of the differentiable arguments, the softness that suits their scale
and the ``max_steps`` of their ``while`` loops. ``relax_programs.py`` (the table and the
benchmark) and ``tests/test_ported_programs.py`` run them.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


@dataclasses.dataclass(frozen=True)
class Program:
    """A ported program and how to call it.

    Attributes:
        name: short identifier.
        family: what kind of program it is (interpolation, binning, ...).
        fn: the program, plain JAX.
        make_args: seeded generator of the arguments, ``make_args(rng) -> tuple``; floats are
            float64 NumPy arrays (cast by the caller), integers int32.
        diff: positions of the differentiable (floating-point) arguments.
        softness: the softness that suits the scale of the program's comparisons.
        max_steps: the bound of its ``while`` loops, if it has one.
        python_syntax: written with Python ``if`` / ``for`` on traced values, so that only
            ``sf.relax`` (which converts the syntax) can trace it; the original runs eagerly.
    """

    name: str
    family: str
    fn: Callable
    make_args: Callable[[np.random.Generator], tuple]
    diff: tuple[int, ...]
    softness: float = 0.1
    max_steps: int | None = None
    python_syntax: bool = False


PROGRAMS: list[Program] = []


def program(family, make_args, diff, **options):
    """Register the decorated function as a ported program."""

    def register(fn):
        PROGRAMS.append(Program(fn.__name__, family, fn, make_args, diff, **options))
        return fn

    return register


def _uniform(rng, low, high, shape):
    return rng.uniform(low, high, shape)


# ------------------------------------------------------------------------------ interpolation


@program("interpolation", lambda r: (_uniform(r, 0.0, 1.0, 12), r.normal(size=9)), (0, 1))
def interp_curve(x, fp):
    """A tone curve by ``jnp.interp`` on fixed knots (numpy.interp as image and audio code use
    it)."""
    xp = jnp.linspace(0.0, 1.0, 9)
    return jnp.interp(x, xp, fp)


@program(
    "interpolation",
    lambda r: (r.normal(size=(6, 7)), _uniform(r, 0.2, 5.8, (10, 2))),
    (0, 1),
    softness=0.1,
)
def bilinear_sample(image, points):
    """Bilinear sampling at floating points, as spatial-transformer / flow-warping code writes it:
    floor the coordinates, cast to int, clip, gather the four corners, weight by the fractions."""
    h, w = image.shape
    x, y = points[:, 0], points[:, 1]
    x0 = jnp.floor(x).astype(jnp.int32)
    y0 = jnp.floor(y).astype(jnp.int32)
    x1, y1 = x0 + 1, y0 + 1
    wa = (x1 - x) * (y1 - y)
    wb = (x1 - x) * (y - y0)
    wc = (x - x0) * (y1 - y)
    wd = (x - x0) * (y - y0)
    x0, x1 = jnp.clip(x0, 0, w - 1), jnp.clip(x1, 0, w - 1)
    y0, y1 = jnp.clip(y0, 0, h - 1), jnp.clip(y1, 0, h - 1)
    return wa * image[y0, x0] + wb * image[y1, x0] + wc * image[y0, x1] + wd * image[y1, x1]


@program(
    "interpolation",
    lambda r: (r.normal(size=(4, 4, 4)), _uniform(r, 0.05, 0.95, (6, 3))),
    (0, 1),
    softness=0.1,
)
def trilinear_voxels(grid, points):
    """Trilinear lookup in a voxel grid (the dense-grid radiance-field style: scale points to the
    grid, floor to the lower corner, sum the eight corners weighted by the fractions)."""
    res = grid.shape[0]
    pos = points * (res - 1)
    i0 = jnp.floor(pos).astype(jnp.int32)
    i0 = jnp.clip(i0, 0, res - 2)
    frac = pos - i0
    out = jnp.zeros(points.shape[0])
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                weight = (
                    (frac[:, 0] if dx else 1 - frac[:, 0])
                    * (frac[:, 1] if dy else 1 - frac[:, 1])
                    * (frac[:, 2] if dz else 1 - frac[:, 2])
                )
                out = out + weight * grid[i0[:, 0] + dx, i0[:, 1] + dy, i0[:, 2] + dz]
    return out


@program(
    "interpolation",
    lambda r: (r.normal(size=(5, 5)), _uniform(r, 0.2, 3.8, (2, 8))),
    (0, 1),
    softness=0.1,
)
def map_coordinates_linear(image, coords):
    """``jax.scipy.ndimage.map_coordinates`` with order 1 (image resampling, as scipy users
    write it)."""
    return jax.scipy.ndimage.map_coordinates(image, [coords[0], coords[1]], order=1, mode="nearest")


# ------------------------------------------------------------------------------------ binning


@program("binning", lambda r: (_uniform(r, 0.0, 1.0, 24),), (0,), softness=0.1)
def histogram_by_floor(x):
    """A histogram by binning, as histogram-loss code writes it: bin index by floor, clip,
    ``.at[idx].add(1)``."""
    bins = 8
    idx = jnp.floor(x * bins).astype(jnp.int32)
    idx = jnp.clip(idx, 0, bins - 1)
    return jnp.zeros(bins).at[idx].add(1.0)


@program("binning", lambda r: (_uniform(r, 0.0, 1.0, 24),), (0,), softness=0.02)
def histogram_jnp(x):
    """``jnp.histogram`` on a fixed range (numpy.histogram as analysis code uses it)."""
    counts, _ = jnp.histogram(x, bins=8, range=(0.0, 1.0))
    return counts


@program("binning", lambda r: (_uniform(r, 0.0, 1.0, 24),), (0,), softness=0.1)
def bincount_bins(x):
    """Counts per bin with ``jnp.bincount`` of truncated bin indices (``(x * bins).astype(int)``,
    the NumPy idiom)."""
    return jnp.bincount((x * 8).astype(jnp.int32), length=8)


@program("binning", lambda r: (_uniform(r, 0.0, 1.0, 16), r.normal(size=16)), (0, 1))
def segment_pooling(positions, features):
    """Voxel / pillar pooling: the cell of each point by floor, features summed per cell with
    ``jax.ops.segment_sum`` (point-cloud encoders)."""
    cells = 6
    cell = jnp.clip(jnp.floor(positions * cells).astype(jnp.int32), 0, cells - 1)
    return jax.ops.segment_sum(features, cell, num_segments=cells)


# ------------------------------------------------------------------------------ lookup tables


_GAMMA_LUT = np.round(255 * (np.arange(256) / 255) ** (1 / 2.2)).astype(np.uint8)


@program("lookup", lambda r: (_uniform(r, 0.05, 0.95, (4, 4)),), (0,), softness=0.5)
def gamma_lut(image):
    """An 8-bit lookup table applied to an image (gamma correction as image pipelines do it):
    quantise to 0..255, index the table, scale back."""
    idx = jnp.clip(jnp.round(image * 255), 0, 255).astype(jnp.int32)
    return jnp.asarray(_GAMMA_LUT)[idx].astype(image.dtype) / 255


@program("lookup", lambda r: (_uniform(r, -0.5, 9.5, 10),), (0,), softness=0.2)
def tax_lookup(income):
    """A progressive tax by bracket lookup (tax-calculator style): ``searchsorted`` finds the
    bracket, tables give its base and marginal rate; a flat credit below a limit."""
    thresholds = jnp.array([0.0, 2.0, 5.0, 8.0])
    rates = jnp.array([0.1, 0.2, 0.3, 0.45])
    base = jnp.array([0.0, 0.2, 0.8, 1.7])
    bracket = jnp.clip(jnp.searchsorted(thresholds, income, side="right") - 1, 0, 3)
    tax = base[bracket] + rates[bracket] * (income - thresholds[bracket])
    credit = jnp.where(income < 3.0, 0.15, 0.0)
    return tax - credit


@program("lookup", lambda r: (_uniform(r, -0.5, 9.5, 10),), (0,), softness=0.2)
def tax_brackets(income):
    """The same schedule as a sum of clipped slices (the vectorised NumPy formulation): no
    discontinuity at all, so relax must leave it as it is."""
    lower = jnp.array([0.0, 2.0, 5.0, 8.0])
    upper = jnp.array([2.0, 5.0, 8.0, jnp.inf])
    rates = jnp.array([0.1, 0.2, 0.3, 0.45])
    return jnp.sum(rates * jnp.clip(income[:, None] - lower, 0.0, upper - lower), axis=1)


@program(
    "lookup", lambda r: (np.array(r.uniform(0.5, 9.5)),), (0,), softness=0.2, python_syntax=True
)
def tax_if_elif(income):
    """A tax schedule written with Python ``if / elif / else`` on brackets (textbook style)."""
    if income < 2.0:
        tax = 0.1 * income
    elif income < 5.0:
        tax = 0.2 + 0.2 * (income - 2.0)
    elif income < 8.0:
        tax = 0.8 + 0.3 * (income - 5.0)
    else:
        tax = 1.7 + 0.45 * (income - 8.0)
    if income < 3.0:
        tax = tax - 0.15
    return tax


# -------------------------------------------------------------------------- cellular automata


_RULE30 = np.array([(30 >> i) & 1 for i in range(8)], np.int32)


@program("automaton", lambda r: (_uniform(r, 0.0, 1.0, 12),), (0,), softness=0.1)
def rule30_table(x0):
    """Elementary cellular automaton rule 30 by rule-table lookup (Wolfram's numbering: the
    neighbourhood 4·left + 2·centre + right indexes the rule's bits), eight steps of
    ``lax.scan``; the initial row is thresholded from floats."""
    cells = (x0 > 0.5).astype(jnp.int32)
    rule = jnp.asarray(_RULE30)

    def step(cells, _):
        idx = 4 * jnp.roll(cells, 1) + 2 * cells + jnp.roll(cells, -1)
        cells = rule[idx]
        return cells, cells

    _, history = lax.scan(step, cells, None, length=8)
    return history


_LIFE_TABLE = np.zeros((2, 9), np.int32)
_LIFE_TABLE[0, 3] = 1
_LIFE_TABLE[1, 2] = _LIFE_TABLE[1, 3] = 1


def _neighbours(board):
    return sum(
        jnp.roll(board, (dr, dc), axis=(0, 1))
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if (dr, dc) != (0, 0)
    )


@program("automaton", lambda r: (_uniform(r, 0.0, 1.0, (6, 6)),), (0,), softness=0.1)
def life_rule_table(board):
    """Game of Life by rule-table lookup: ``table[alive, neighbours]`` (B3/S23), two steps on a
    torus."""
    alive = (board > 0.5).astype(jnp.int32)
    table = jnp.asarray(_LIFE_TABLE)
    for _ in range(2):
        alive = table[alive, _neighbours(alive)]
    return alive


@program("automaton", lambda r: (_uniform(r, 0.0, 1.0, (6, 6)),), (0,), softness=0.1)
def life_convolution(board):
    """Game of Life by neighbour counting with ``convolve2d`` and the B3/S23 conditions (the usual
    NumPy / JAX demo), one step with zero boundary."""
    alive = (board > 0.5).astype(board.dtype)
    kernel = jnp.ones((3, 3), board.dtype).at[1, 1].set(0.0)
    n = jax.scipy.signal.convolve2d(alive, kernel, mode="same")
    return ((n == 3) | ((alive == 1) & (n == 2))).astype(board.dtype)


# ------------------------------------------------------------------------------ nearest neighbours


def _knn_args(r):
    train_x = r.normal(size=(12, 2))
    train_y = (train_x[:, 0] + 0.3 * r.normal(size=12) > 0).astype(np.int32) + (
        train_x[:, 1] > 0.8
    ).astype(np.int32)
    return r.normal(size=2) * 0.5, train_x, train_y


@program("search", _knn_args, (0, 1), softness=0.1)
def knn_classify(query, train_x, train_y):
    """k-nearest-neighbour classifier (the classic NumPy exercise): ``argsort`` the distances,
    ``bincount`` the labels of the k nearest, ``argmax`` the vote."""
    d = jnp.sum((train_x - query) ** 2, axis=-1)
    nearest = jnp.argsort(d)[:3]
    votes = jnp.bincount(train_y[nearest], length=3)
    return jnp.argmax(votes)


def _knn_regress_args(r):
    train_x = r.normal(size=(12, 2))
    return r.normal(size=2) * 0.5, train_x, np.sin(train_x[:, 0]) + train_x[:, 1]


@program("search", _knn_regress_args, (0, 1, 2), softness=0.1)
def knn_regress(query, train_x, train_y):
    """k-nearest-neighbour regression: mean target of the k nearest by ``argsort``."""
    d = jnp.sum((train_x - query) ** 2, axis=-1)
    return jnp.mean(train_y[jnp.argsort(d)[:3]])


@program("search", _knn_regress_args, (0, 1, 2), softness=0.1)
def knn_top_k(query, train_x, train_y):
    """k-nearest-neighbour regression with ``lax.top_k`` of the negated distances (the
    retrieval-code idiom)."""
    d = jnp.sum((train_x - query) ** 2, axis=-1)
    _, nearest = lax.top_k(-d, 3)
    return jnp.mean(train_y[nearest])


def _graph_args(r):
    w = r.uniform(0.5, 3.0, (5, 5))
    return ((w + w.T) / 2,)


@program("search", _graph_args, (0,), softness=0.1)
def dijkstra_dense(w):
    """Dijkstra on a dense weight matrix (the textbook O(n²) version: pick the nearest unvisited
    node by ``argmin``, mark it visited, relax its edges), ``jnp.inf`` for unreached nodes."""
    n = w.shape[0]

    def body(_, state):
        dist, visited = state
        u = jnp.argmin(jnp.where(visited, jnp.inf, dist))
        visited = visited.at[u].set(True)
        return jnp.minimum(dist, dist[u] + w[u]), visited

    init = (jnp.full(n, jnp.inf).at[0].set(0.0), jnp.zeros(n, bool))
    return lax.fori_loop(0, n, body, init)[0]


@program("search", _graph_args, (0,), softness=0.1, max_steps=6)
def bellman_ford(w):
    """Bellman-Ford with early exit: relax every edge until no distance changes (``while_loop``
    on ``any(new < dist)``)."""
    n = w.shape[0]

    def cond(state):
        _, changed, i = state
        return changed & (i < n)

    def body(state):
        dist, _, i = state
        new = jnp.minimum(dist, jnp.min(dist[:, None] + w, axis=0))
        return new, jnp.any(new < dist), i + 1

    init = (jnp.full(n, 1e9).at[0].set(0.0), jnp.array(True), 0)
    return lax.while_loop(cond, body, init)[0]


# -------------------------------------------------------------------------------- controllers


def _pid_args(r):
    return (np.array([2.0, 1.0, 0.1]) * r.uniform(0.8, 1.2, 3),)


@program("controller", _pid_args, (0,), softness=0.1)
def pid_antiwindup(gains):
    """A PID controller with output saturation and conditional-integration anti-windup on a
    first-order plant (the Åström-Murray textbook loop), 40 steps of ``lax.scan``."""
    kp, ki, kd = gains
    dt, u_max = 0.1, 1.5
    targets = jnp.where(jnp.arange(40) < 20, 1.0, -0.5)

    def step(state, target):
        x, integral, previous = state
        error = target - x
        candidate = integral + error * dt
        u = kp * error + ki * candidate + kd * (error - previous) / dt
        saturated = jnp.abs(u) > u_max
        integral = jnp.where(saturated, integral, candidate)
        u = jnp.clip(u, -u_max, u_max)
        x = x + dt * (u - 0.5 * x)
        return (x, integral, error), x

    _, xs = lax.scan(step, (0.0, 0.0, 0.0), targets)
    return jnp.mean((xs - targets) ** 2)


@program("controller", _pid_args, (0,), softness=0.1, python_syntax=True)
def pid_python_loop(gains, steps=10):
    """The same kind of controller as a beginner writes it: a Python ``for`` over the steps with
    ``if / elif / else`` saturation."""
    kp, ki, kd = gains[0], gains[1], gains[2]
    x, integral, previous, cost = 0.0, 0.0, 0.0, 0.0
    for _ in range(steps):
        error = 1.0 - x
        integral = integral + 0.1 * error
        u = kp * error + ki * integral + kd * (error - previous) / 0.1
        if u > 1.5:
            u = 1.5
        elif u < -1.5:
            u = -1.5
        x = x + 0.1 * (u - 0.5 * x)
        previous = error
        cost = cost + error**2
    return cost


def _thermostat_args(r):
    return np.array(r.uniform(19.0, 19.6)), np.array(r.uniform(20.4, 21.0)), np.array(18.0)


@program("hybrid", _thermostat_args, (0, 1, 2), softness=0.1)
def thermostat(low, high, temperature):
    """A bang-bang thermostat with hysteresis: an integer heating mode carried through
    ``lax.scan`` (on below ``low``, off above ``high``, else unchanged)."""
    outside = 10.0 + 2.0 * jnp.sin(jnp.linspace(0.0, 6.0, 60))

    def step(state, t_out):
        temp, heating = state
        heating = jnp.where(temp < low, 1, jnp.where(temp > high, 0, heating))
        temp = temp + 0.1 * (-0.3 * (temp - t_out) + 6.0 * heating)
        return (temp, heating), temp

    _, temps = lax.scan(step, (temperature, 0), outside)
    return temps


def _gearbox_args(r):
    return np.array(r.uniform(0.2, 0.6)), np.array([3.0, 6.0]) + r.uniform(-0.3, 0.3, 2)


@program("hybrid", _gearbox_args, (0, 1), softness=0.1)
def gearbox_switch(v0, shift_up):
    """A hybrid system: a car with three gears, the gear an integer mode carried through
    ``lax.scan``, shifting up past a speed threshold, the dynamics chosen by ``lax.switch``."""

    def gear(k):
        return lambda v: (3.0 - k) * (1.0 - v / (4.0 * (k + 1)))

    dynamics = [gear(0), gear(1), gear(2)]
    up = jnp.concatenate([shift_up, jnp.array([jnp.inf])])

    def step(state, _):
        v, mode = state
        mode = jnp.where(v > up[mode], mode + 1, mode)
        v = v + 0.2 * lax.switch(mode, dynamics, v)
        return (v, mode), v

    _, vs = lax.scan(step, (v0, 0), None, length=40)
    return vs


def _fsm_args(r):
    return (r.normal(size=20),)


_FSM = np.array([[0, 1], [0, 2], [0, 2]], np.int32)  # states: idle, rising, high; symbol: x > 0


@program("hybrid", _fsm_args, (0,), softness=0.2)
def fsm_detector(signal):
    """A finite-state machine by transition table (``state = table[state, symbol]``), counting
    the steps spent in the accepting state (two consecutive highs): the event detectors of
    signal-processing code."""
    table = jnp.asarray(_FSM)

    def step(state, x):
        symbol = (x > 0.0).astype(jnp.int32)
        state = table[state, symbol]
        return state, state == 2

    _, accepting = lax.scan(step, 0, signal)
    return jnp.sum(accepting)


def _viterbi_args(r):
    return r.normal(size=(8, 3)), np.log(r.dirichlet(np.ones(3), 3))


@program("hybrid", _viterbi_args, (0, 1), softness=0.3)
def viterbi_decode(log_emission, log_transition):
    """Viterbi decoding of a hidden Markov model (speech and bioinformatics code): a forward
    ``scan`` of max-plus scores that records the best predecessor of each state, then a reverse
    ``scan`` that follows the back-pointers from the best last state; the mean decoded state."""

    def forward(score, emission):
        candidates = score[:, None] + log_transition
        return jnp.max(candidates, axis=0) + emission, jnp.argmax(candidates, axis=0)

    score, back = lax.scan(forward, log_emission[0], log_emission[1:])

    def backward(state, pointers):
        return pointers[state], state

    first, path = lax.scan(backward, jnp.argmax(score), back, reverse=True)
    return jnp.mean(jnp.concatenate([first[None], path]))


# -------------------------------------------------------------------------------- samplers


def _sampler_args(r):
    return r.normal(size=6), np.array(r.uniform(0.05, 0.95))


@program("sampler", _sampler_args, (0,), softness=0.05)
def inverse_cdf_sample(logits, u):
    """Inverse-CDF sampling of a categorical: ``searchsorted`` of a uniform in the cumulative
    sum, then a value table (numpy.random's recipe)."""
    p = jax.nn.softmax(logits)
    cdf = jnp.cumsum(p)
    idx = jnp.searchsorted(cdf, u)
    values = jnp.linspace(-1.0, 1.0, logits.shape[0])
    return values[jnp.clip(idx, 0, logits.shape[0] - 1)]


def _gumbel_args(r):
    return r.normal(size=6), r.gumbel(size=6)


@program("sampler", _gumbel_args, (0,), softness=0.3)
def gumbel_max_sample(logits, gumbel):
    """The Gumbel-max trick: ``argmax(logits + g)`` picks a value from a table."""
    values = jnp.linspace(-1.0, 1.0, logits.shape[0])
    return values[jnp.argmax(logits + gumbel)]


@program("sampler", lambda r: (r.normal(size=8),), (0,), softness=0.05)
def nucleus_top_p(logits):
    """Nucleus (top-p) filtering as generation code writes it: sort descending, cumulative mass,
    keep the tokens before the mass reaches p, map the mask back with ``argsort`` of the
    ``argsort``, renormalise."""
    top_p = 0.8
    probs = jax.nn.softmax(logits)
    order = jnp.argsort(-probs)
    sorted_probs = probs[order]
    keep_sorted = jnp.cumsum(sorted_probs) - sorted_probs < top_p
    keep = keep_sorted[jnp.argsort(order)]
    filtered = jnp.where(keep, probs, 0.0)
    return filtered / jnp.sum(filtered)


@program("sampler", lambda r: (r.normal(size=8),), (0,), softness=0.1)
def top_k_mask(logits):
    """Top-k filtering with ``lax.top_k``: the k-th largest logit is the threshold below which
    logits are masked (sampling code's top-k warper)."""
    values, _ = lax.top_k(logits, 3)
    masked = jnp.where(logits < values[-1], -1e9, logits)
    return jax.nn.softmax(masked)


@program("ranking", lambda r: (r.normal(size=8), r.normal(size=8)), (0, 1), softness=0.1)
def spearman(x, y):
    """Spearman's rank correlation with ranks by ``argsort(argsort(x))`` (scipy.stats'
    definition, the NumPy idiom for ranks)."""
    rx = jnp.argsort(jnp.argsort(x)).astype(x.dtype)
    ry = jnp.argsort(jnp.argsort(y)).astype(y.dtype)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return jnp.sum(rx * ry) / jnp.sqrt(jnp.sum(rx**2) * jnp.sum(ry**2))


# ---------------------------------------------------------------------------- geometry


def _spheres_args(r):
    centers = np.stack([r.uniform(-1, 1, 3), r.uniform(-1, 1, 3), r.uniform(3, 4, 3)], axis=1)
    return centers, r.uniform(1.0, 1.4, 3)


@program("geometry", _spheres_args, (0, 1), softness=0.05)
def ray_trace_spheres(centers, radii):
    """A ray caster (the "ray tracing in one weekend" intersection): the nearer root of the
    ray-sphere quadratic where the discriminant is positive, the nearest sphere by ``argmin``,
    Lambert shading of the hit, background elsewhere; a 6x6 image. The square root is guarded
    by a tiny positive floor: ``sqrt(maximum(disc, 0))`` has a NaN gradient in plain JAX where
    a ray misses (``0 * inf``), in the original program as in the relaxed one."""
    u = jnp.linspace(-1.0, 1.0, 6)
    dirs = jnp.stack([*jnp.meshgrid(u, u, indexing="ij"), jnp.ones((6, 6))], -1).reshape(-1, 3)
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    oc = -centers  # rays start at the origin
    b = dirs @ oc.T  # (rays, spheres)
    c = jnp.sum(oc**2, -1) - radii**2
    disc = b**2 - c
    t = -b - jnp.sqrt(jnp.maximum(disc, 1e-12))
    t = jnp.where((disc > 0) & (t > 0), t, jnp.inf)
    nearest = jnp.argmin(t, axis=-1)
    t_hit = jnp.min(t, axis=-1)
    hit_point = dirs * jnp.where(jnp.isfinite(t_hit), t_hit, 0.0)[:, None]
    normal = hit_point - centers[nearest]
    normal = normal / jnp.linalg.norm(normal, axis=-1, keepdims=True)
    light = jnp.array([-0.4, 0.5, -0.77])
    shade = jnp.maximum(normal @ light, 0.0)
    return jnp.where(jnp.isfinite(t_hit), shade, 0.1).reshape(6, 6)


def _march_args(r):
    return np.array(r.uniform(-0.3, 0.3, 2)), np.array(r.uniform(0.8, 1.2))


@program("geometry", _march_args, (0, 1), softness=0.05, python_syntax=True)
def sphere_march(direction, radius, steps=24):
    """Sphere tracing as shader tutorials write it: march along a ray by the distance to the
    nearest surface of a signed distance field (a sphere above a floor) until it is within a
    tolerance (a Python ``break``), then shade the depth with fog."""
    ray = jnp.array([direction[0], direction[1], 1.0])
    ray = ray / jnp.linalg.norm(ray)
    center = jnp.array([0.0, 0.0, 4.0])
    t = 0.0
    for _ in range(steps):
        point = t * ray
        distance = jnp.minimum(jnp.linalg.norm(point - center) - radius, point[1] + 1.5)
        if distance < 1e-3:
            break
        t = t + distance
    return jnp.exp(-0.1 * t)


def _throw_args(r):
    return np.array(r.uniform(4.0, 6.0)), np.array(r.uniform(0.6, 1.0))


@program("physics", _throw_args, (0, 1), softness=0.05, python_syntax=True)
def projectile_landing(speed, angle, steps=24):
    """Where a thrown ball lands on a hilly terrain, as game code steps it: explicit Euler until
    the ball is below the ground, then ``return`` its position from inside the loop (and its
    position plus a penalty where it is still flying at the end)."""
    x, y = 0.0, 0.0
    vx, vy = speed * jnp.cos(angle), speed * jnp.sin(angle)
    for _ in range(steps):
        x = x + 0.1 * vx
        vy = vy - 0.981
        y = y + 0.1 * vy
        if y < 0.3 * jnp.sin(2.0 * x):
            return x
    return x + 10.0


def _payback_args(r):
    return r.uniform(0.2, 1.0, 40), np.array(r.uniform(4.0, 8.0))


@program("search", _payback_args, (0, 1), softness=0.05, python_syntax=True)
def payback_period(flows, investment, steps=12):
    """The fractional year in which cumulative cash flows pay an investment back, as finance
    tutorials write it: a Python ``for`` over the years that breaks once it is paid back, and an
    ``else:`` for an investment never paid back."""
    balance = -investment
    for year in range(steps):
        before = balance
        balance = balance + flows[year]
        if balance >= 0.0:
            paid = year - before / flows[year]
            break
    else:
        paid = 2.0 * steps - balance
    return paid


def _ruin_args(r):
    return np.array(r.uniform(0.4, 0.5)), np.array(r.uniform(2.0, 4.0)), r.uniform(size=40)


@program("search", _ruin_args, (0, 1), softness=0.1, python_syntax=True)
def gamblers_ruin(p_win, stake, draws, steps=12):
    """A gambler's wealth less a fee per round played, as simulation tutorials write it: a
    Python ``for`` over the draws that stops once less than the least bet is left, the wealth
    starting as a Python number (so that the stop is static in the first round) and the rounds
    a Python counter. (Not ``wealth <= 0.0``: a gambler who bets all that is left has exactly
    0.0, a tie, which a soft comparison weighs 1/2 at every softness.)"""
    wealth = 10.0
    rounds = 0
    for u in draws[:steps]:
        if wealth < 1.0:
            break
        bet = min(stake, wealth)
        wealth = wealth + bet if u < p_win else wealth - bet
        rounds += 1
    return wealth - 0.5 * rounds


def _trajectory_args(r):
    return np.array(r.uniform(1.0, 2.0)), np.array(r.uniform(-0.5, 0.5))


@program("physics", _trajectory_args, (0, 1), softness=0.05, python_syntax=True)
def bounce_trajectory(height, velocity, steps=20):
    """The heights of a bouncing ball as plotting scripts record them: a Python ``for`` that
    appends each step's height to a list, stacked after the loop."""
    y, v = height, velocity
    heights = []
    for _ in range(steps):
        v = v - 0.5
        y = y + 0.1 * v
        if y < 0.0:
            y = -y
            v = -0.8 * v
        heights.append(y)
    return jnp.stack(heights)


def _ball_args(r):
    return np.array(r.uniform(1.0, 2.0)), np.array(r.uniform(-0.5, 0.5)), np.array(0.8)


@program("physics", _ball_args, (0, 1, 2), softness=0.05)
def bouncing_ball(height, velocity, restitution):
    """A ball bouncing on the floor with restitution (semi-implicit Euler, reflect the velocity
    when the ball is below the floor), 80 steps of ``lax.scan``."""
    dt, g = 0.05, 9.81

    def step(state, _):
        y, v = state
        v = v - g * dt
        y = y + v * dt
        bounced = y < 0.0
        v = jnp.where(bounced, -restitution * v, v)
        y = jnp.where(bounced, -y, y)
        return (y, v), y

    _, ys = lax.scan(step, (height, velocity), None, length=80)
    return ys


def _particles_args(r):
    return r.uniform(0.1, 0.9, (4, 2)), r.normal(size=(4, 2))


@program("physics", _particles_args, (0, 1), softness=0.02)
def particles_in_box(pos, vel):
    """Particles in a unit box bouncing off the walls (molecular-dynamics toy: flip the velocity
    component that leaves the box), 30 steps of ``fori_loop``."""

    def step(_, state):
        pos, vel = state
        pos = pos + 0.05 * vel
        outside = (pos < 0.0) | (pos > 1.0)
        vel = jnp.where(outside, -vel, vel)
        pos = jnp.clip(pos, 0.0, 1.0)
        return pos, vel

    return lax.fori_loop(0, 30, step, (pos, vel))[0]


# ---------------------------------------------------------------------------- root finding


@program("root finding", lambda r: (np.array(r.uniform(2.0, 5.0)),), (0,), max_steps=40)
def bisection_cbrt(a):
    """The cube root by bisection (``while`` the bracket is wider than a tolerance)."""

    def cond(state):
        lo, hi = state
        return hi - lo > 1e-4

    def body(state):
        lo, hi = state
        mid = 0.5 * (lo + hi)
        above = mid**3 - a > 0
        return jnp.where(above, lo, mid), jnp.where(above, mid, hi)

    lo, hi = lax.while_loop(cond, body, (0.0, 2.0))
    return 0.5 * (lo + hi)


@program("root finding", lambda r: (np.array(r.uniform(2.0, 5.0)),), (0,), max_steps=30)
def newton_sqrt(a):
    """Newton's method for sqrt(a) with a residual tolerance and an iteration cap
    (``while |f(x)| > tol and i < 30``)."""

    def cond(state):
        x, i = state
        return (jnp.abs(x * x - a) > 1e-5) & (i < 30)

    def body(state):
        x, i = state
        return x - (x * x - a) / (2 * x), i + 1

    return lax.while_loop(cond, body, (a, 0))[0]


@program(
    "root finding",
    lambda r: (np.array(r.uniform(2.0, 5.0)), np.array(1e-3)),
    (0, 1),
    softness=0.01,
    python_syntax=True,
)
def newton_until_converged(a, tol):
    """Newton's method for sqrt(a) as scripts write it: ``while True:`` with a ``break`` once the
    residual is below a tolerance or the iteration count reaches a cap (which bounds the relaxed
    loop: no ``max_steps``)."""
    x = a
    iterations = 0
    while True:
        x = 0.5 * (x + a / x)
        iterations += 1
        if abs(x * x - a) < tol or iterations >= 12:
            break
    return x + 0.01 * iterations


# ---------------------------------------------------------------------------- interpreters


_FUNCTIONS = (
    lambda a, b: a + b,
    lambda a, b: a - b,
    lambda a, b: a * b,
    lambda a, b: jnp.where(jnp.abs(b) > 1e-3, a / b, 1.0),  # CGP's protected division
)


def _cgp_args(r):
    return r.uniform(0.02, 0.98, (5, 3)), r.normal(size=2)


@program("interpreter", _cgp_args, (0, 1), softness=0.05)
def cgp_program(genes, x):
    """Cartesian genetic programming with a real-valued genome (as JAX CGP libraries decode it):
    each node's function and inputs are ``floor(gene * choices)``, the function applied by
    ``lax.switch``."""
    n_in = x.shape[0]
    values = jnp.zeros(n_in + genes.shape[0]).at[:n_in].set(x)
    for i in range(genes.shape[0]):
        f = jnp.floor(genes[i, 0] * len(_FUNCTIONS)).astype(jnp.int32)
        a = jnp.floor(genes[i, 1] * (n_in + i)).astype(jnp.int32)
        b = jnp.floor(genes[i, 2] * (n_in + i)).astype(jnp.int32)
        values = values.at[n_in + i].set(lax.switch(f, _FUNCTIONS, values[a], values[b]))
    return values[-1]


# opcodes of the stack machine
PUSH_X, PUSH_C, ADD, MUL, JUMP_IF_NEG, HALT = range(6)
_CODE = np.array([PUSH_X, PUSH_C, ADD, JUMP_IF_NEG, PUSH_C, MUL, HALT, PUSH_C, MUL, HALT], np.int32)
_ARGS = np.array([0.0, -0.5, 0.0, 7.0, 2.0, 0.0, 0.0, -3.0, 0.0, 0.0])


@program("interpreter", lambda r: (np.array(r.uniform(-0.5, 1.5)),), (0,), max_steps=12)
def stack_machine(x):
    """A tiny stack-machine interpreter (fetch, ``lax.switch`` on the opcode, a conditional jump
    on the top of the stack), as toy VMs in JAX are written; computes 2(x - 0.5) if x ≥ 0.5 and
    -3(x - 0.5) otherwise."""
    code, args = jnp.asarray(_CODE), jnp.asarray(_ARGS)

    def push(state, value):
        pc, sp, stack = state
        return pc + 1, sp + 1, stack.at[sp].set(value)

    def binary(op):
        def run(state, _):
            pc, sp, stack = state
            value = op(stack[sp - 2], stack[sp - 1])
            return pc + 1, sp - 1, stack.at[sp - 2].set(value)

        return run

    def jump_if_negative(state, target):
        pc, sp, stack = state
        jump = stack[sp - 1] < 0
        return jnp.where(jump, target.astype(jnp.int32), pc + 1), sp, stack

    handlers = [
        lambda state, _: push(state, x),
        push,
        binary(jnp.add),
        binary(jnp.multiply),
        jump_if_negative,
        lambda state, _: state,
    ]

    def cond(state):
        pc, _, _ = state
        return code[pc] != HALT

    def body(state):
        pc, _, _ = state
        return lax.switch(code[pc], handlers, state, args[pc])

    zero = jnp.zeros((), jnp.int32)
    _, sp, stack = lax.while_loop(cond, body, (zero, zero, jnp.zeros(4)))
    return stack[sp - 1]


# ------------------------------------------------------------------------------ quantisation


@program("quantisation", lambda r: (r.normal(size=10), np.array(0.25)), (0, 1), softness=0.1)
def fake_quantize(x, scale):
    """Uniform fake quantisation of quantisation-aware training: round to a 4-bit grid, clip,
    scale back."""
    q = jnp.clip(jnp.round(x / scale), -8, 7)
    return q * scale


@program("quantisation", lambda r: (r.normal(size=10),), (0,), softness=0.3)
def absmax_int8(w):
    """Absmax int8 weight quantisation (the LLM.int8 recipe): scale by the largest magnitude,
    round, cast to ``int8``, dequantise."""
    scale = jnp.max(jnp.abs(w)) / 127
    q = jnp.clip(jnp.round(w / scale), -127, 127).astype(jnp.int8)
    return q.astype(w.dtype) * scale


@program("quantisation", lambda r: (r.uniform(-4.0, 4.0, 10),), (0,), softness=0.1)
def wrap_angle(theta):
    """Angle normalisation to [-π, π) by float ``%`` (robotics code), then a heading error."""
    wrapped = (theta + jnp.pi) % (2 * jnp.pi) - jnp.pi
    return wrapped**2


# ------------------------------------------------------------------------- piecewise functions


def _mlp_args(r):
    return (
        r.normal(size=(3, 5)),
        r.normal(size=5) * 0.3,
        r.normal(size=(5, 1)) * 0.3,
        r.normal(size=3),
    )


@program("piecewise", _mlp_args, (0, 1, 2, 3), softness=0.1)
def piecewise_mlp(w1, b1, w2, x):
    """A small MLP with piecewise-linear activations written with ``jnp.where`` (leaky ReLU) and
    ``jax.nn.hard_tanh``."""
    h = x @ w1 + b1
    h = jnp.where(h > 0, h, 0.01 * h)
    return jax.nn.hard_tanh(h @ w2)


@program("piecewise", lambda r: (r.normal(size=6) * 0.8,), (0,), softness=0.1)
def clip_by_global_norm(g):
    """Gradient clipping by global norm as optax writes it: rescale where the norm exceeds the
    maximum."""
    max_norm = 1.5
    norm = jnp.sqrt(jnp.sum(g**2))
    return jnp.where(norm < max_norm, g, g * max_norm / norm)


# ------------------------------------------------------------------------------ sorting


@program("sorting", lambda r: (r.normal(size=6),), (0,), softness=0.1, max_steps=6)
def insertion_sort(x):
    """Insertion sort (CLRS): ``fori_loop`` over keys, an inner ``while j >= 0 and a[j] > key``
    that shifts elements right."""

    def insert(i, a):
        key = a[i]

        def cond(state):
            j, a = state
            return (j >= 0) & (a[j] > key)

        def body(state):
            j, a = state
            return j - 1, a.at[j + 1].set(a[j])

        j, a = lax.while_loop(cond, body, (i - 1, a))
        return a.at[j + 1].set(key)

    return lax.fori_loop(1, x.shape[0], insert, x)


@program("sorting", lambda r: (r.normal(size=6),), (0,), softness=0.1)
def odd_even_network(x):
    """Odd-even transposition sorting network with compare-exchange by ``jnp.where`` (Knuth
    vol. 3), unrolled in Python."""
    n = x.shape[0]
    for layer in range(n):
        for i in range(layer % 2, n - 1, 2):
            a, b = x[i], x[i + 1]
            swap = a > b
            x = x.at[i].set(jnp.where(swap, b, a)).at[i + 1].set(jnp.where(swap, a, b))
    return x


@program("sorting", lambda r: (r.normal(size=12),), (0,), softness=0.1)
def median_filter(signal):
    """A 1-D median filter of width 5 (scipy.signal.medfilt): shifted copies stacked,
    ``jnp.median`` across them."""
    windows = jnp.stack([jnp.roll(signal, s) for s in range(-2, 3)])
    return jnp.median(windows, axis=0)


# ------------------------------------------------------------------------------ counting


def _signal_args(r):
    return r.normal(size=16), np.array(0.2)


@program("counting", _signal_args, (0, 1), softness=0.1)
def longest_run_above(x, threshold):
    """The longest run of samples above a threshold (run-length counting with an integer run
    carried through ``lax.scan``)."""

    def step(state, value):
        run, best = state
        run = jnp.where(value > threshold, run + 1, 0)
        return (run, jnp.maximum(best, run)), None

    (_, best), _ = lax.scan(step, (0, 0), x)
    return best


@program("counting", _signal_args, (0, 1), softness=0.1)
def threshold_crossings(x, threshold):
    """Number of threshold crossings (spike / zero-crossing counting: where the sign of
    ``x > t`` changes between neighbours)."""
    above = x > threshold
    return jnp.sum(above[1:] != above[:-1])


@program("counting", _signal_args, (0, 1), softness=0.1)
def first_passage(x, threshold):
    """The first time a path crosses a level (``argmax`` of a boolean array), as first-passage
    code in finance and survival analysis writes it."""
    path = jnp.cumsum(x)
    return jnp.argmax(path > threshold + 1.0)


@program("counting", _signal_args, (0, 1), softness=0.1)
def third_exceedance(x, threshold):
    """The time of the third exceedance of a level (reliability and hydrology code): ``argmax``
    of the running count of exceedances reaching 3."""
    return jnp.argmax(jnp.cumsum(x > threshold) >= 3)


def _neuron_args(r):
    return r.uniform(1.2, 2.4, size=24), np.array(0.8)


@program("counting", _neuron_args, (0, 1), softness=0.05, python_syntax=True)
def integrate_and_fire(current, threshold):
    """A leaky integrate-and-fire neuron as computational-neuroscience tutorials write it: a
    Python ``for`` over the input current, the membrane reset and a Python spike counter under
    an ``if`` on the threshold."""
    v = 0.0
    spikes = 0
    for i in range(current.shape[0]):
        v = v + 0.1 * (current[i] - v)
        if v > threshold:
            v = 0.0
            spikes += 1
    return v + spikes


PROGRAMS_BY_NAME = {p.name: p for p in PROGRAMS}
