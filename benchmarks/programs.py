"""The programs that the benchmarks run, each written with softflow and by hand in plain JAX.

The plain-JAX versions compute the same mathematics without softflow (no argument checks, no
masking of non-finite branch values), so that their difference in speed is the cost of the
abstraction. Only JAX and softflow are imported here: the peers' versions live in their own
modules, which import them.
"""

import jax
import jax.numpy as jnp
import numpy as np

import softflow as sf

# ------------------------------------------------------------------------------ soft_if branches


def branch_true(x):
    """A non-trivial branch: a few transcendental operations per element."""
    return jnp.sin(3.0 * x) * x + 1.0


def branch_false(x):
    """The other branch, of similar cost."""
    return jnp.tanh(x) * x * x - jnp.cos(x)


def soft_if_softflow(p, x):
    """``sf.soft_if`` on the two branches."""
    return sf.soft_if(p, branch_true, branch_false, x)


def both_branches(p, x):
    """Both branches, computed and added: the floor that soft_if cannot beat (p is unused)."""
    del p
    return branch_true(x) + branch_false(x)


def soft_if_plain(p, x):
    """The blend written by hand."""
    return p * branch_true(x) + (1 - p) * branch_false(x)


# ------------------------------------------------------------------------- Game of Life (B3/S23)


def neighbour_count(board):
    """Live neighbours of every cell of a torus (last two axes), as the sum of eight rolls."""
    total = jnp.zeros_like(board)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                total = total + jnp.roll(board, (dr, dc), axis=(-2, -1))
    return total


def life_softflow(board, softness):
    """One relaxed Life step: a live cell survives on 2 or 3 neighbours, a dead one is born on 3."""
    count = neighbour_count(board)
    three = sf.equal(count, 3.0, softness=softness)
    two = sf.equal(count, 2.0, softness=softness)
    survives = sf.logical_or(two, three)
    return sf.soft_where(board, survives, three)


def _bump_plain(difference, softness):
    # softflow's logistic equal: 4 s(z) s(-z), z = difference / softness.
    z = difference / softness
    return 4 * jax.nn.sigmoid(z) * jax.nn.sigmoid(-z)


def life_plain(board, softness):
    """The same relaxed Life step written by hand in plain JAX."""
    count = neighbour_count(board)
    three = _bump_plain(count - 3.0, softness)
    two = _bump_plain(count - 2.0, softness)
    survives = two + three - two * three
    return board * survives + (1 - board) * three


def neighbours(board):
    """The eight neighbours of every cell of a torus (last two axes), as a list of rolled boards."""
    return [
        jnp.roll(board, (dr, dc), axis=(-2, -1))
        for dr in (-1, 0, 1)
        for dc in (-1, 0, 1)
        if dr or dc
    ]


def life_counting(board, softness):
    """The Life step from the exact law of the neighbour count (the cells independent coins).

    P(alive next) = P(N = 3) + p P(N = 2), by ``sf.count_expectation`` on the eight rolled
    boards (a list, counted cell by cell); ``softness`` is unused: the count law has none.
    """
    del softness
    return sf.count_expectation(neighbours(board), [0.0, 0.0, board, 1.0])


def life_counting_stacked(board, softness):
    """The same step from ``sf.count_distribution`` of the rolled boards stacked on a new axis."""
    del softness
    law = sf.count_distribution(jnp.stack(neighbours(board)), axis=0, max_count=3)
    return law[..., 3] + board * law[..., 2]


def life_counting_plain(board, softness):
    """The count-law Life step written by hand in plain JAX (the recursion over the neighbours)."""
    del softness
    law = [jnp.ones_like(board), *(jnp.zeros_like(board) for _ in range(3))]
    for p in neighbours(board):
        law = [law[0] * (1 - p), *(law[k] * (1 - p) + law[k - 1] * p for k in range(1, 4))]
    return law[3] + board * law[2]


def life_boards(*, tiny: bool, quick: bool):
    """A batch of random boards of probabilities and 0/1 targets (float32) for the Life step."""
    shape = (8, 16, 16) if tiny else (256, 32, 32) if quick else (1024, 64, 64)
    rng = np.random.default_rng(0)
    boards = rng.random(shape).astype(np.float32)
    targets = (rng.random(shape) < 0.3).astype(np.float32)
    return jnp.asarray(boards), jnp.asarray(targets)


def life_loss(step):
    """Forward and backward of a Life step: the squared error of one step against a target."""

    def loss(board, target, softness):
        return jnp.mean((step(board, softness) - target) ** 2)

    return jax.value_and_grad(loss)


# ----------------------------------------------------------------- a loop with a sharp condition


LOOP_RATE = 0.1


def loop_body(x):
    """One step of a damped fixed-point iteration; mean(x**2) shrinks by about a quarter a step."""
    return x - LOOP_RATE * (x + 0.3 * jnp.sin(x))


def loop_energy(x):
    """The quantity the loop condition looks at."""
    return jnp.mean(x * x)


def loop_hard(x, threshold):
    """``while mean(x**2) > threshold: x = body(x)`` with :func:`jax.lax.while_loop`."""
    return jax.lax.while_loop(lambda v: loop_energy(v) > threshold, loop_body, x)


def loop_hard_steps(x, threshold):
    """How many steps :func:`loop_hard` takes."""

    def body(carry):
        v, steps = carry
        return loop_body(v), steps + 1

    return jax.lax.while_loop(lambda c: loop_energy(c[0]) > threshold, body, (x, 0))[1]


def loop_condition(threshold, softness):
    """The loop's soft condition: mean(x**2) > threshold, in log units so that it is sharp."""

    def condition(x):
        return sf.greater(jnp.log(loop_energy(x)), jnp.log(threshold), softness=softness)

    return condition


def loop_softflow(x, threshold, softness, max_steps, tol):
    """The loop with :func:`softflow.soft_while`."""
    return sf.soft_while(
        loop_condition(threshold, softness), loop_body, x, max_steps=max_steps, tol=tol
    )


def _condition_plain(x, threshold, softness):
    return jax.nn.sigmoid((jnp.log(loop_energy(x)) - jnp.log(threshold)) / softness)


def loop_plain_while(x, threshold, softness, max_steps, tol):
    """Cumulative halting by hand with ``lax.while_loop``: stops once the mass left is <= tol.

    Forward only: reverse-mode differentiation of a while loop is not defined in JAX.
    """

    def body(carry):
        step, value, mass, total = carry
        keep_going = _condition_plain(value, threshold, softness)
        total = total + mass * (1 - keep_going) * value
        return step + 1, loop_body(value), mass * keep_going, total

    def running(carry):
        step, _, mass, _ = carry
        return (step < max_steps) & (mass > tol)

    init = (0, x, jnp.ones((), x.dtype), jnp.zeros_like(x))
    _, value, mass, total = jax.lax.while_loop(running, body, init)
    return total + mass * value


def loop_plain_scan(x, threshold, softness, max_steps):
    """Cumulative halting by hand with ``lax.scan`` over every step (reverse-differentiable).

    Its gradient stores the state of every one of the ``max_steps`` steps.
    """

    def body(carry, _):
        value, mass, total = carry
        keep_going = _condition_plain(value, threshold, softness)
        total = total + mass * (1 - keep_going) * value
        return (loop_body(value), mass * keep_going, total), None

    init = (x, jnp.ones((), x.dtype), jnp.zeros_like(x))
    (value, mass, total), _ = jax.lax.scan(body, init, length=max_steps)
    return total + mass * value


# -------------------------------------------------------------------- soft bubble sort (AlgoVision)


def _bubble_pass(values, swapped, remaining, beta, compare, blend):
    """One pass of bubble sort over pairs (i, i+1), i < remaining, relaxed by ``compare``/``blend``.

    ``values`` is (..., n); ``swapped`` and ``remaining`` broadcast against values[..., 0]. The
    pairs are visited by a ``fori_loop`` (not unrolled), so the program's size, and its compile
    time, do not grow with n.
    """

    def visit(i, carry):
        values, swapped = carry
        left = jax.lax.dynamic_index_in_dim(values, i, axis=-1, keepdims=False)
        right = jax.lax.dynamic_index_in_dim(values, i + 1, axis=-1, keepdims=False)
        # Pairs past the sorted tail are left alone: their weight is exactly 0.
        p = compare(left, right, beta) * (i < remaining).astype(values.dtype)
        values = jax.lax.dynamic_update_index_in_dim(values, blend(p, right, left), i, axis=-1)
        values = jax.lax.dynamic_update_index_in_dim(values, blend(p, left, right), i + 1, axis=-1)
        return values, blend(p, jnp.ones_like(swapped), swapped)

    values, swapped = jax.lax.fori_loop(
        0, values.shape[-1] - 1, visit, (values, jnp.zeros_like(swapped))
    )
    return values, swapped, remaining - 1


def bubble_sort_softflow(values, beta, tol):
    """AlgoVision's relaxed bubble sort with softflow, for one array of shape (n,).

    ``while swapped: swapped = 0; for i < remaining: if a[i] > a[i+1]: swap, swapped = 1;
    remaining -= 1`` with a soft ``>`` (logistic, softness 1/beta), soft ifs and a soft while
    with cumulative halting: the semantics of AlgoVision's ``While``/``If``/``GT``.
    """
    n = values.shape[-1]

    def compare(a, b, beta):
        return sf.greater(a, b, softness=1 / beta)

    def body(state):
        array, swapped, remaining = state
        return _bubble_pass(array, swapped, remaining, beta, compare, sf.soft_where)

    init = (values, jnp.ones((), values.dtype), jnp.asarray(n - 1, values.dtype))
    return sf.soft_while(lambda s: s[1], body, init, max_steps=n, tol=tol)[0]


def bubble_sort_plain(values, beta):
    """The same relaxed bubble sort by hand in plain JAX, batched (B, n), with ``lax.scan``."""
    n = values.shape[-1]
    batch = values.shape[:-1]

    def compare(a, b, beta):
        return jax.nn.sigmoid((a - b) * beta)

    def blend(p, x, y):
        return p * x + (1 - p) * y

    def body(carry, _):
        array, swapped, remaining, mass, total = carry
        halt = mass * (1 - swapped)
        total = total + halt[..., None] * array
        mass = mass * swapped
        array, swapped, remaining = _bubble_pass(array, swapped, remaining, beta, compare, blend)
        return (array, swapped, remaining, mass, total), None

    ones = jnp.ones(batch, values.dtype)
    init = (values, ones, jnp.asarray(n - 1, values.dtype), ones, jnp.zeros_like(values))
    (array, _, _, mass, total), _ = jax.lax.scan(body, init, length=n)
    # The state after the last pass keeps the mass that no check has stopped.
    return total + mass[..., None] * array


def loop_batch(*, tiny: bool):
    """A batch of loop problems that stop after about ten steps each, and how many they take."""
    batch, size = (8, 100) if tiny else (64, 1000)
    x = jax.random.normal(jax.random.key(3), (batch, size))
    thresholds = jnp.linspace(0.04, 0.1, batch)
    steps = jax.vmap(loop_hard_steps)(x, thresholds)
    return x, thresholds, int(jnp.min(steps)), int(jnp.max(steps))


def loop_softflow_batched(max_steps, softness=0.01, tol=1e-6):
    """``vmap`` of :func:`loop_softflow` over the initial states and thresholds."""
    return jax.vmap(lambda x, t: loop_softflow(x, t, softness, max_steps, tol))


def bubble_sort_scan_softflow(values, beta):
    """:func:`bubble_sort_plain` (a ``lax.scan`` over every pass) with softflow's ``>`` and blend.

    Between the plain version and :func:`bubble_sort_softflow`: it has softflow's comparisons and
    ``soft_where`` but not its loop, so that the two differences can be told apart.
    """
    n = values.shape[-1]
    batch = values.shape[:-1]

    def compare(a, b, beta):
        return sf.greater(a, b, softness=1 / beta)

    def body(carry, _):
        array, swapped, remaining, mass, total = carry
        halt = mass * (1 - swapped)
        total = total + halt[..., None] * array
        mass = mass * swapped
        array, swapped, remaining = _bubble_pass(
            array, swapped, remaining, beta, compare, sf.soft_where
        )
        return (array, swapped, remaining, mass, total), None

    ones = jnp.ones(batch, values.dtype)
    init = (values, ones, jnp.asarray(n - 1, values.dtype), ones, jnp.zeros_like(values))
    (array, _, _, mass, total), _ = jax.lax.scan(body, init, length=n)
    return total + mass[..., None] * array


def fori_gradient(n_steps, *, checkpoint):
    """The gradient of the sum after ``n_steps`` damped steps with :func:`sf.soft_fori_loop`."""

    def loss(x):
        out = sf.soft_fori_loop(0, n_steps, lambda i, v: loop_body(v), x, checkpoint=checkpoint)
        return jnp.sum(out)

    return jax.grad(loss)


# ------------------------------------------------------ an exact program, smoothed by sf.smooth


def bouncing_particles(params, targets):
    """Squared miss of 256 particles thrown up at ``params[0]`` (spread by ``params[1]``) over a
    floor, after 200 steps of exact bounces (a ``jnp.where`` per step): a program with jumps."""
    spread = jnp.linspace(-1.0, 1.0, targets.shape[0])
    velocity = params[0] + params[1] * spread
    height = jnp.zeros_like(velocity)

    def step(_, state):
        height, velocity = state
        velocity = velocity - 9.81 * 0.01
        height = height + 0.01 * velocity
        bounce = height < 0.0
        return jnp.where(bounce, -height, height), jnp.where(bounce, -0.8 * velocity, velocity)

    height, _ = jax.lax.fori_loop(0, 200, step, (height, velocity))
    return jnp.mean((height - targets) ** 2)


def perturbed(params, scale, key, samples):
    """``samples`` Gaussian perturbations of ``params`` (the inputs of the plain baselines)."""
    return params + scale * jax.random.normal(key, (samples, *params.shape), params.dtype)


def evaluations_one_at_a_time(params, targets, scale, key, samples):
    """The program at ``samples`` perturbed inputs, one after the other in one jitted loop: the
    arithmetic of separate evaluations, without their dispatch."""
    points = perturbed(params, scale, key, samples)
    return jax.lax.map(lambda p: bouncing_particles(p, targets), points)


def evaluations_vectorised(params, targets, scale, key, samples):
    """The program at ``samples`` perturbed inputs, as one vectorised call (jax.vmap)."""
    points = perturbed(params, scale, key, samples)
    return jax.vmap(bouncing_particles, in_axes=(0, None))(points, targets)


def smoothed_gradient(params, targets, scale, key, samples, batch_size=None):
    """The value and the antithetic gradient estimate of sf.smooth from ``samples`` evaluations
    (``batch_size`` at a time; all at once by default)."""
    smoothed = sf.smooth(bouncing_particles, scale=scale, samples=samples, batch_size=batch_size)
    return jax.value_and_grad(smoothed)(params, targets, key=key)
