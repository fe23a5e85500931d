"""Python ``for`` loops in sf.relax: rolled into one ``lax.scan`` where that is the same program,
unrolled where the body needs it; and functions written the way scientists write Python (PID
control with anti-windup, bisection, Newton with a break, an epidemic with an intervention, an
inventory policy, a thermostat state machine), each checked through sf.relax: hard mode = the
function, the straight-through forward value = the function, soft gradients = float64 finite
differences, rolled = unrolled, under jit and vmap."""

import functools
import itertools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import softflow as sf
from softflow._program._syntax import call_converted_with

TAU = 0.5


class Ported(NamedTuple):
    fn: Callable
    args: Callable  # rng -> tuple of float64 numpy arrays
    rolled: bool  # whether the default conversion rolls its loop
    max_steps: int | None = None


PORTED: dict[str, Ported] = {}


def ported(args, rolled, max_steps=None):
    def register(fn):
        PORTED[fn.__name__] = Ported(fn, args, rolled, max_steps)
        return fn

    return register


@ported(lambda rng: (rng.uniform(0.5, 2.0, size=3), rng.uniform(0.5, 1.5)), rolled=True)
def pid(gains, setpoint):
    """A PID controller on a first-order plant, with output saturation and anti-windup."""
    kp, ki, kd = gains[0], gains[1], gains[2]
    dt = 0.1
    y = 0.0
    v = 0.0
    integral = 0.0
    previous = setpoint
    cost = 0.0
    for _ in range(30):
        error = setpoint - y
        integral = integral + error * dt
        derivative = (error - previous) / dt
        u = kp * error + ki * integral + kd * derivative
        if u > 2.0:
            u = 2.0
            integral = integral - error * dt  # anti-windup: undo the integration
        elif u < -2.0:
            u = -2.0
            integral = integral - error * dt
        v = v + (u - 0.5 * v) * dt
        y = y + v * dt
        previous = error
        cost = cost + error * error * dt
    return cost


@ported(lambda rng: (rng.uniform(1.0, 6.0),), rolled=True)
def bisection_cube_root(a):
    """The cube root of a by 20 halvings of a bracket."""
    lo = 0.0
    hi = a + 1.0
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        if mid * mid * mid > a:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


@ported(lambda rng: (rng.uniform(1.0, 9.0),), rolled=True)
def newton_sqrt_with_break(a):
    """Newton's iteration for sqrt(a), stopped when the step is small (a soft break: a while
    loop over the steps whose body ends in its exit)."""
    x = a
    for _ in range(8):
        step = 0.5 * (x - a / x)
        x = x - step
        if abs(step) < 1e-2:
            break
    return x


@ported(lambda rng: (rng.uniform(2.0, 4.0), rng.uniform(0.3, 0.7)), rolled=True)
def sphere_trace(distance, radius):
    """Sphere tracing along a ray towards a sphere: step by the distance to its surface until
    close enough (a break), then shade by the distance travelled."""
    t = 0.0
    for _ in range(24):
        d = jnp.sqrt((t - distance) ** 2 + 0.01) - radius
        if d < 0.05:
            break
        t = t + 0.9 * d
    return t + 0.1 * t * t


@ported(lambda rng: (rng.uniform(0.2, 0.4), rng.uniform(0.05, 0.15)), rolled=True)
def epidemic(beta, threshold):
    """A discrete SIR model; contacts are halved while infections exceed a threshold."""
    s, i, r = 0.99, 0.01, 0.0
    gamma = 0.1
    peak = 0.0
    for day in range(60):
        rate = beta
        if i > threshold:
            rate = beta * 0.5
        new = rate * s * i
        s, i, r = s - new, i + new - gamma * i, r + gamma * i
        peak = peak + i * i
        del day
    return peak + r


@ported(lambda rng: (rng.uniform(2.0, 8.0, size=12), rng.uniform(3.0, 6.0)), rolled=True)
def inventory(demand, reorder_level):
    """An (s, S) inventory policy over a year of monthly demand (a loop over an array's rows)."""
    stock = 10.0
    cost = 0.0
    for d in demand:
        if stock < reorder_level:
            cost = cost + 4.0 + (15.0 - stock) * 0.5
            stock = 15.0
        stock = stock - d
        if stock < 0:
            cost = cost - stock * 2.0  # unmet demand
            stock = 0.0 * stock
        cost = cost + stock * 0.1
    return cost


@ported(lambda rng: (rng.uniform(17.0, 19.0), rng.uniform(21.0, 23.0)), rolled=True)
def thermostat(low, high):
    """A heater with hysteresis: a two-state machine over 40 steps."""
    temp = 18.0
    heating = 1.0
    energy = 0.0
    for _ in range(40):
        if heating > 0.5 and temp > high:
            heating = 0.0 * heating
        elif heating < 0.5 and temp < low:
            heating = 0.0 * heating + 1.0
        temp = temp + 0.5 * heating - 0.1 * (temp - 15.0) * 0.5
        energy = energy + heating
    return energy + temp


@ported(lambda rng: (rng.uniform(0.2, 2.0, size=12), rng.uniform(4.0, 8.0)), rolled=True)
def payback_year(flows, investment):
    """The fractional year in which the cumulative cash flows pay an investment back (a return
    inside the loop over the years), and a penalty where they never do."""
    balance = -investment
    for year in range(12):
        before = balance
        balance = balance + flows[year]
        if balance >= 0.0:
            return year - before / flows[year]
    return 12.0 + balance * balance


@ported(lambda rng: (rng.uniform(-1.0, 1.0, size=(8, 2)), rng.uniform(0.3, 0.6)), rolled=True)
def path_to_target(waypoints, radius):
    """The length of a path along waypoints up to the first one within ``radius`` of the origin
    (a return inside a loop over an array's rows)."""
    travelled = 0.0
    previous = waypoints[0]
    for point in waypoints:
        travelled = travelled + jnp.sqrt(jnp.sum((point - previous) ** 2) + 1e-12)
        if jnp.sqrt(point[0] ** 2 + point[1] ** 2) < radius:
            return travelled
        previous = point
    return travelled + 10.0


@ported(lambda rng: (rng.uniform(0.5, 1.5, size=10), rng.uniform(2.0, 4.0)), rolled=True)
def first_passage(increments, level):
    """The first step at which a walk passes a level (an integer returned from inside the loop),
    or -1 where it never does."""
    position = 0.0
    for step in range(10):
        position = position + increments[step]
        if position > level:
            return step
    return -1


@ported(lambda rng: (rng.uniform(-1.0, 1.0, size=10), *rng.uniform(1.5, 2.5, size=2)), rolled=True)
def barrier_walk(steps, upper, lower):
    """The payoff of a walk stopped by the first of two barriers it hits (two breaks), or, where it
    ends between them, by where it ends (the loop's else clause): a double-barrier option."""
    position = 0.0
    for k in range(10):
        position = position + steps[k]
        if position >= upper:
            payoff = 2.0 - 0.1 * position
            break
        if position <= -lower:
            payoff = 0.0 * position
            break
    else:
        payoff = 1.0 + 0.5 * position
    return payoff


@ported(lambda rng: (rng.uniform(0.0, 1.0, size=10), rng.uniform(0.6, 0.9)), rolled=True)
def first_crossing_time(signal, threshold):
    """The time at which a sampled signal first rises above a threshold, interpolated between
    samples (a flag and the index set at the break only, read under an if on the flag after the
    loop), or the end of the record where it never does."""
    found = False
    previous = 0.0
    for i in range(10):
        if signal[i] > threshold:
            found = True
            index = i
            fraction = (threshold - previous) / (signal[i] - previous)
            break
        previous = signal[i]
    if found:  # noqa: SIM108 (an if statement on the flag, run in each world)
        time = index - 1.0 + fraction
    else:
        time = 10.0 + previous
    return time


@ported(lambda rng: (rng.uniform(0.5, 1.2), rng.uniform(-1.0, 1.0)), rolled=True)
def fixed_point_iteration(a, x0):
    """x = cos(a x) iterated until the step is small (a value first assigned in the loop and read
    after it, and a flag set at the break), and a penalty where it has not converged."""
    x = x0
    converged = False
    for _ in range(12):
        x_new = jnp.cos(a * x)
        if abs(x_new - x) < 0.05:
            converged = True
            break
        x = x_new
    return x_new if converged else x + 10.0


def _collision_args(rng):
    t = np.linspace(0.0, 1.0, 8)
    return np.stack([4.0 * t, np.sin(3.0 * t)], 1), rng.uniform(-1.0, 4.0, (3, 2)), 0.6


@ported(_collision_args, rolled=True)
def first_collision(path, obstacles, radius):
    """The first point of a path within ``radius`` of an obstacle, as a nested search breaks out
    of both loops (a flag set at the inner break, `if found: break` in the outer loop)."""
    found = False
    which, when = 0, 0
    for i in range(path.shape[0]):
        for j in range(obstacles.shape[0]):
            d = (path[i, 0] - obstacles[j, 0]) ** 2 + (path[i, 1] - obstacles[j, 1]) ** 2
            if d < radius * radius:
                found = True
                which, when = j, i
                break
        if found:
            break
    return path[when, 0] + obstacles[which, 1] * radius


@ported(lambda rng: (rng.uniform(0.0, 1.0, size=10), rng.uniform(0.6, 0.8)), rolled=True)
def moving_average_alarm(samples, level):
    """The first moving average of three samples above a level, returned from inside the loop
    (the average is first assigned in the loop, and read after it), or the last one, lowered."""
    for i in range(2, 10):
        average = (samples[i - 2] + samples[i - 1] + samples[i]) / 3.0
        if average > level:
            return average
    return average - 1.0


def _jaxpr_text(fn, args, unroll=None):
    return str(jax.make_jaxpr(functools.partial(call_converted_with, fn, unroll, False))(*args))


@pytest.mark.parametrize("name", sorted(PORTED))
def test_ported_program(name, x64):
    prog = PORTED[name]
    rng = np.random.default_rng(3)
    args = tuple(jnp.asarray(a) for a in prog.args(rng))
    options = {"softness": TAU, "max_steps": prog.max_steps}
    soft = sf.relax(prog.fn, **options)
    unrolled = sf.relax(prog.fn, **options, unroll=True)
    st = sf.relax(prog.fn, **options, mode="straight_through")
    hard = sf.relax(prog.fn, **options, mode="hard")
    text = _jaxpr_text(prog.fn, args)
    assert ("scan[" in text or "while[" in text) == prog.rolled
    plain = prog.fn(*args)
    # hard mode and the straight-through forward value are the function, bit for bit
    np.testing.assert_array_equal(hard(*args), plain)
    np.testing.assert_array_equal(st(*args), plain)
    argnums = tuple(range(len(args)))
    direction = [jnp.asarray(rng.normal(size=np.shape(a))) for a in args]

    @jax.jit
    def run(*a):
        h = 1e-6
        up = [x + h * d for x, d in zip(a, direction, strict=True)]
        down = [x - h * d for x, d in zip(a, direction, strict=True)]
        return {
            "soft": soft(*a),
            "hard": hard(*a),
            "st": st(*a),
            "grad": jax.grad(soft, argnums)(*a),
            "grad_st": jax.grad(st, argnums)(*a),
            "jvp": jax.jvp(soft, a, tuple(direction))[1],
            "fd": (soft(*up) - soft(*down)) / (2 * h),
        }

    r = run(*args)
    # rolled = unrolled, values and gradients, to float64 rounding (unrolled, run operation by
    # operation: compiling its reverse mode is what rolling avoids)
    value_unrolled, grads_unrolled = _outputs_and_gradients(unrolled, args, argnums, compiled=False)
    np.testing.assert_allclose(r["soft"], value_unrolled, rtol=1e-12)
    for g, gu in zip(r["grad"], grads_unrolled, strict=True):
        np.testing.assert_allclose(g, gu, rtol=1e-10, atol=1e-12)
    # compiled: the same program, up to the multiply-adds XLA may fuse (float64 here)
    np.testing.assert_allclose(r["hard"], plain, rtol=1e-13)
    np.testing.assert_allclose(r["st"], plain, rtol=1e-13)
    for g in r["grad_st"]:
        assert np.all(np.isfinite(g))
    # the soft gradient is the derivative of the soft value
    np.testing.assert_allclose(r["jvp"], r["fd"], rtol=1e-5, atol=1e-8)
    # vmap over a batch of arguments: each row as its own call
    batch = tuple(jnp.stack([a, a * 1.01]) for a in args)
    np.testing.assert_allclose(
        jax.vmap(soft)(*batch)[1], soft(*(a * 1.01 for a in args)), rtol=1e-12
    )


def test_at_least_five_ported_programs():
    assert len(PORTED) >= 5


# ----------------------------------------------------------------- when a loop is rolled


def _edges(y):
    j = y.shape[0] - 1  # the previous vertex, cyclic
    out = []
    for i in range(y.shape[0]):
        out.append(y[i] - y[j])
        j = i
    return jnp.stack(out), j


def _inside_polygon(point, polygon):
    """Ray casting with crossing parity, as geometry code writes it."""
    inside = False
    j = polygon.shape[0] - 1
    for i in range(polygon.shape[0]):
        xi, yi = polygon[i, 0], polygon[i, 1]
        xj, yj = polygon[j, 0], polygon[j, 1]
        if (yi > point[1]) != (yj > point[1]):  # noqa: SIM102 (as such code is written)
            if point[0] < (xj - xi) * (point[1] - yi) / (yj - yi) + xi:
                inside = not inside
        j = i
    return inside


def test_a_variable_set_to_the_loop_index_keeps_it_for_the_next_pass(x64):
    # `j = i` at the end of the body (a polygon's previous vertex): the rolled loop took j for
    # Python's loop variable, so that every pass read its value before the loop, in hard mode too.
    y = jnp.arange(6.0) ** 2
    for relaxed in (sf.relax(_edges, mode="hard"), sf.relax(_edges, softness=TAU)):
        for got, expected in zip(jax.jit(relaxed)(y), _edges(y), strict=True):
            np.testing.assert_array_equal(got, expected)
    angles = np.arange(6) * np.pi / 3 + np.random.default_rng(0).uniform(0.0, 0.5, 6)
    polygon = jnp.asarray(np.stack([np.cos(angles), np.sin(angles)], 1))
    hard = jax.jit(sf.relax(_inside_polygon, mode="hard"))
    for point in ([0.1, 0.2], [0.95, 0.1], [-0.2, -0.99], [1.5, 0.0]):
        point = jnp.asarray(point)
        assert bool(hard(point, polygon)) == bool(_inside_polygon(point, polygon))
    point = jnp.asarray([0.8, 0.3])
    (value, grads), (value_unrolled, grads_unrolled) = (
        _outputs_and_gradients(
            lambda *a, u=u: 1.0 * sf.relax(_inside_polygon, softness=0.1, unroll=u)(*a),
            (point, polygon),
            (0, 1),
            compiled=u is None,
        )
        for u in (None, True)
    )
    np.testing.assert_allclose(value, value_unrolled, rtol=1e-12)
    for a, b in zip(grads, grads_unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_rolled_program_size_does_not_grow_with_the_trip_count():
    """The gradient of the relaxed 30-step controller is the same program as the 10-step one
    (one scan body); unrolled, it grows with the steps."""

    def controller(steps):
        def run(gains, setpoint):
            y, v, integral, cost = 0.0, 0.0, 0.0, 0.0
            for _ in range(steps):
                error = setpoint - y
                integral = integral + error * 0.1
                u = gains[0] * error + gains[1] * integral
                if u > 2.0:
                    u = 2.0 + 0.0 * u
                elif u < -2.0:
                    u = -2.0 + 0.0 * u
                v = v + (u - 0.5 * v) * 0.1
                y = y + v * 0.1
                cost = cost + error * error
            return cost

        return run

    args = (jnp.array([1.0, 0.5]), jnp.float32(1.0))

    def size(steps, unroll):
        grad = jax.grad(sf.relax(controller(steps), softness=0.1, unroll=unroll))
        return len(jax.make_jaxpr(grad)(*args).eqns)

    assert size(10, None) == size(30, None)
    assert size(30, True) > 2 * size(10, True)
    # and the compiled gradient runs again without recompiling
    traces = []

    def traced_gradient(gains, setpoint):
        traces.append(None)  # runs once per trace
        return jax.grad(sf.relax(controller(30), softness=0.1))(gains, setpoint)

    grad = jax.jit(traced_gradient)
    grad(*args)
    grad(args[0] * 2, args[1] + 1)
    assert len(traces) == 1


def test_a_loop_with_a_soft_break_is_rolled():
    """A Python for over a static range with a break on a traced condition is one while loop
    (its body ending in the exit), so that the relaxed gradient's program does not grow with the
    trip count (unrolled, compiling the gradient of a 30-step sphere tracer took 31 s)."""

    def tracer(steps):
        def run(distance, radius):
            t = 0.0
            for _ in range(steps):
                d = jnp.sqrt((t - distance) ** 2 + 0.01) - radius
                if d < 0.05:
                    break
                t = t + 0.9 * d
            return t

        return run

    args = (jnp.float32(3.0), jnp.float32(0.5))

    def size(steps, unroll):
        grad = jax.grad(sf.relax(tracer(steps), softness=0.1, unroll=unroll))
        return len(jax.make_jaxpr(grad)(*args).eqns)

    assert size(10, None) == size(30, None)
    assert size(30, True) > 2 * size(10, True)
    # the trip count is the range's: no max_steps needed, and a loop that runs out of steps
    # before it breaks gives what the unrolled one does
    for steps in (3, 10):
        rolled, unrolled = (sf.relax(tracer(steps), softness=0.1, unroll=u) for u in (None, True))
        np.testing.assert_allclose(rolled(*args), unrolled(*args), rtol=1e-6)


def _equations(closed) -> int:
    """The number of equations of a jaxpr, those of the jaxprs inside it included."""
    return str(closed).count(" = ")


def _outputs_and_gradients(fn, args, argnums, *, compiled):
    """fn's outputs and the gradients of their sum, in one pass: compiled, or run operation by
    operation (for an unrolled program, whose reverse mode is what rolling avoids compiling)."""

    def summed(*a):
        outputs = fn(*a)
        return sum(jax.tree.leaves(outputs)), outputs

    run = jax.value_and_grad(summed, argnums, has_aux=True)
    (_, outputs), grads = (jax.jit(run) if compiled else run)(*args)
    return outputs, grads


def _assert_rolled_is_unrolled(fn, args, softness, atol):
    """The relaxed program rolled = unrolled (values and gradients, float32), and hard mode
    under jit = the program."""
    rolled, unrolled = (sf.relax(fn, softness=softness, unroll=u) for u in (None, True))
    argnums = tuple(range(len(args)))
    value, grads = _outputs_and_gradients(rolled, args, argnums, compiled=True)
    value_unrolled, grads_unrolled = _outputs_and_gradients(unrolled, args, argnums, compiled=False)
    np.testing.assert_allclose(value, value_unrolled, rtol=1e-6)
    for grad, grad_unrolled in zip(grads, grads_unrolled, strict=True):
        np.testing.assert_allclose(grad, grad_unrolled, rtol=1e-5, atol=atol)
    assert float(jax.jit(sf.relax(fn, mode="hard"))(*args)) == float(fn(*args))


def test_a_loop_over_rows_with_a_soft_break_is_rolled():
    def until_full(rows, capacity):
        load = 0.0
        for row in rows:
            if load > capacity:
                break
            load = load + row[0] * row[1]
        return load

    rows = jnp.asarray(np.random.default_rng(0).uniform(0.0, 1.0, (12, 2)), jnp.float32)
    capacity = jnp.float32(1.0)
    assert "while[" in _jaxpr_text(until_full, (rows, capacity))
    _assert_rolled_is_unrolled(until_full, (rows, capacity), softness=0.1, atol=1e-7)


def test_a_loop_with_a_soft_return_is_rolled():
    """A Python for over a static range with returns on traced conditions is one scan stacking the
    values returned; unrolled, compiling the gradient of a 40-step search took 290 s."""

    def search(steps):
        def run(x, t):
            total = 0.0
            for i in range(steps):
                total = total + x[i]
                if x[i] > t:
                    return total, x[i]
                total = 0.9 * total
                if total > 2.0 * t:
                    return -total, 0.5 * total
            return total, 0.0 * total

        return run

    rng = np.random.default_rng(1)
    x, t = jnp.asarray(rng.uniform(0.0, 1.0, 30), jnp.float32), jnp.float32(0.9)

    def size(steps, unroll):
        relaxed = sf.relax(search(steps), softness=0.2, unroll=unroll)
        return _equations(jax.make_jaxpr(jax.grad(lambda *a: sum(relaxed(*a)), (0, 1)))(x, t))

    assert size(30, None) < 1.2 * size(10, None)
    assert size(30, True) > 2 * size(10, True)
    for steps in (10, 30):
        (values, grads), (values_unrolled, grads_unrolled) = (
            _outputs_and_gradients(
                sf.relax(search(steps), softness=0.2, unroll=u), (x, t), (0, 1), compiled=u is None
            )
            for u in (None, True)
        )
        for a, b in zip(values, values_unrolled, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5)
        for a, b in zip(grads, grads_unrolled, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        hard = jax.jit(sf.relax(search(steps), mode="hard"))(x, t)
        for a, b in zip(hard, search(steps)(x, t), strict=True):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_a_loop_that_keeps_its_index_at_the_break_is_rolled():
    # `found = i; break`: unrolled, compiling the gradient of a 40-element search took 20 s.
    def first_above(x, t, y):
        found = 0
        for i in range(x.shape[0]):
            if x[i] > t:
                found = i
                break
        return y[found]

    rng = np.random.default_rng(2)
    x, y = (jnp.asarray(rng.uniform(0.0, 1.0, 12), jnp.float32) for _ in range(2))
    t = jnp.float32(0.8)
    assert "while[" in _jaxpr_text(first_above, (x, t, y))
    _assert_rolled_is_unrolled(first_above, (x, t, y), softness=0.2, atol=1e-7)


def test_a_loop_with_an_else_clause_or_a_flag_set_at_its_break_is_rolled():
    """A soft break followed by an else clause, or by an ``if`` / conditional expression on a flag
    set at the break, runs as one scan that stacks the worlds at the breaks, each of which then
    takes its own branch; unrolled, compiling the gradient of a 40-year payback period with an
    else clause took 426 s."""

    def payback(years):
        def run(flows, cost):
            total = 0.0
            for year in range(years):
                total = total + flows[year]
                if total >= cost:
                    paid = year + (cost - total + flows[year]) / flows[year]
                    break
            else:
                paid = 2.0 * years + total
            return paid

        return run

    def flagged(years):
        def run(flows, cost):
            found = False
            total = 0.0
            for year in range(years):
                total = total + flows[year]
                if total >= cost:
                    found = True
                    break
            bonus = 1.0 if found else flows[0]
            if not found:
                return bonus * total
            return total - cost + bonus

        return run

    rng = np.random.default_rng(4)
    flows, cost = jnp.asarray(rng.uniform(0.1, 0.5, 30), jnp.float32), jnp.float32(2.5)
    for program in (payback, flagged):

        def size(years, unroll, program=program):
            relaxed = sf.relax(program(years), softness=0.2, unroll=unroll)
            return _equations(jax.make_jaxpr(jax.grad(relaxed, (0, 1)))(flows, cost))

        # (the first break taken is found by a prefix product over the iterations, whose jaxpr
        # grows with their logarithm)
        assert size(30, None) < 1.2 * size(10, None)
        assert size(30, True) > 2 * size(10, True)
        for years, c in ((10, cost), (30, cost), (30, 100.0 * cost)):
            _assert_rolled_is_unrolled(program(years), (flows, c), softness=0.2, atol=1e-6)


def test_a_short_loop_inside_an_unrolled_loop_is_rolled():
    # A round-robin scheduler: unrolled, the 2 x 4 nest of soft ifs compiled its gradient in
    # 21 s (the probe's version, 230 s); with the inner loop rolled, in 7 s.
    def schedule(bursts, quantum):
        remaining = bursts
        t = 0.0
        for _ in range(2):
            for j in range(4):
                if remaining[j] > 0:
                    if remaining[j] > quantum:
                        t = t + quantum
                        remaining = remaining.at[j].add(-quantum)
                    else:
                        t = t + remaining[j]
                        remaining = remaining.at[j].set(0.0)
        return t

    bursts = jnp.asarray(np.random.default_rng(0).uniform(1.0, 7.0, 4), jnp.float32)
    quantum = jnp.float32(2.0)
    assert _jaxpr_text(schedule, (bursts, quantum)).count("scan[") == 2
    _assert_rolled_is_unrolled(schedule, (bursts, quantum), softness=0.1, atol=1e-6)


def test_a_return_in_a_loop_inside_a_soft_if_is_refused():
    # It leaked a tracer out of the if statement's lax.cond.
    def search(x, t):
        total = 0.0
        if x[0] > 0.5:
            for i in range(8):
                total = total + x[i]
                if total > t:
                    return total
        return 2.0 * total

    x = jnp.linspace(0.0, 1.0, 8)
    with pytest.raises(sf.ConversionError, match="does not return on every path"):
        sf.relax(search, softness=0.2)(x, 2.0)


def test_a_loop_with_returns_after_an_early_return_is_the_mixture():
    # The converter puts the code after an early return in an else: the loop's returns are mixed
    # in that side of the if, rather than leaking out of its lax.cond (UnexpectedTracerError).
    def search(x, t):
        if x[0] > 0.9:
            return 0.0
        for i in range(8):
            if x[i] > t:
                return x[i] * 2.0
        return -1.0

    def by_hand(x, t):
        p = sf.greater(x, t, softness=0.2)
        value, running = jnp.zeros(()), jnp.ones(())
        for i in range(8):
            value, running = value + running * p[i] * 2.0 * x[i], running * (1.0 - p[i])
        inner = value - running
        return sf.soft_where(sf.greater(x[0], 0.9, softness=0.2), 0.0, inner)

    x = jnp.asarray(np.random.default_rng(3).uniform(0.0, 1.0, 8), jnp.float32)
    t = jnp.float32(0.7)
    relaxed = sf.relax(search, softness=0.2)
    np.testing.assert_allclose(relaxed(x, t), by_hand(x, t), rtol=1e-5)
    np.testing.assert_allclose(jax.grad(relaxed)(x, t), jax.grad(by_hand)(x, t), rtol=1e-4)
    for threshold in (0.3, 0.7, 0.95):
        exact = jax.jit(sf.relax(search, mode="hard"))(x, jnp.float32(threshold))
        assert float(exact) == float(search(x, jnp.float32(threshold)))


def test_a_list_appended_to_after_a_soft_break_is_refused():
    # Unrolled, every iteration after a soft break appended, so that the list's length was the
    # trip count's whatever the break (len(trace) gave 10 where the program gives 5).
    def first_steps(x, limit):
        s = 0.0 * limit
        trace = []
        for i in range(10):
            s = s + jnp.abs(x[i])
            trace.append(s)
            if s > limit:
                break
        return s + len(trace)

    x, limit = jnp.linspace(0.5, 1.4, 10), jnp.float32(3.0)
    assert float(sf.relax(first_steps, mode="hard")(x, limit)) == float(first_steps(x, limit))
    with pytest.raises(sf.ConversionError, match=r"`trace.append\(...\)` at .*after a soft break"):
        sf.relax(first_steps, softness=0.1)(x, limit)


@pytest.mark.parametrize("unroll", [None, True])
def test_a_variable_set_at_a_break_only_is_read_in_the_worlds_that_set_it(unroll):
    def position_of_first_above(x, t):
        for i in range(6):
            if x[i] > t:
                position = i
                break
        return x[position]

    x, t = jnp.linspace(0.0, 1.0, 6), jnp.float32(0.5)
    assert float(sf.relax(position_of_first_above, mode="hard")(x, t)) == float(x[3])
    relaxed = sf.relax(position_of_first_above, softness=0.1, unroll=unroll)
    with pytest.raises(
        sf.ConversionError, match=r"'position' is set by the loop at .*:\d+ .*worlds"
    ):
        relaxed(x, t)


def test_a_break_out_of_two_loops_is_the_search_over_the_pairs(x64):
    """`if found: break` after an inner loop that sets the flag at its break leaves the outer
    loop at the inner loop's breaks: the same mixture as one loop over the pairs; a break in the
    other worlds (where the inner loop did not break) is refused."""

    def nested(points, centres, radius):
        found = False
        hit = 0.0
        for i in range(points.shape[0]):
            for j in range(centres.shape[0]):
                if jnp.sum((points[i] - centres[j]) ** 2) < radius:
                    found = True
                    hit = points[i, 0] * centres[j, 1]
                    break
            if found:
                break
        return hit

    def nested_else(points, centres, radius):  # (the idiom without a flag)
        hit = 0.0
        for i in range(points.shape[0]):
            for j in range(centres.shape[0]):
                if jnp.sum((points[i] - centres[j]) ** 2) < radius:
                    hit = points[i, 0] * centres[j, 1]
                    break
            else:
                continue
            break
        return hit

    def pairs(points, centres, radius):
        hit = 0.0
        for k in range(points.shape[0] * centres.shape[0]):
            i, j = divmod(k, centres.shape[0])
            if jnp.sum((points[i] - centres[j]) ** 2) < radius:
                hit = points[i, 0] * centres[j, 1]
                break
        return hit

    rng = np.random.default_rng(5)
    points, centres = (jnp.asarray(rng.uniform(0.0, 1.0, (n, 2))) for n in (7, 3))
    radius = jnp.asarray(0.05)
    for u, program in itertools.product((None, True), (nested, nested_else)):
        (nested_value, nested_grads), (pairs_value, pairs_grads) = (
            _outputs_and_gradients(
                sf.relax(f, softness=0.1, unroll=u),
                (points, centres, radius),
                (0, 1, 2),
                compiled=u is None,
            )
            for f in (program, pairs)
        )
        np.testing.assert_allclose(nested_value, pairs_value, rtol=1e-12)
        for a, b in zip(nested_grads, pairs_grads, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    for r, program in itertools.product((0.0, 0.05, 1.0), (nested, nested_else)):
        args = (points, centres, jnp.asarray(r))
        assert float(jax.jit(sf.relax(program, mode="hard"))(*args)) == float(program(*args))

    def leaves_where_not_found(points, centres, radius):
        found = False
        for i in range(points.shape[0]):
            for j in range(centres.shape[0]):
                if jnp.sum((points[i] - centres[j]) ** 2) < radius:
                    found = True
                    break
            if not found:
                break
        return radius

    with pytest.raises(sf.ConversionError, match=r"break at .*:\d+ .* leaves the loop around"):
        sf.relax(leaves_where_not_found, softness=0.1)(points, centres, radius)


def _first_index_above(x, y, t):
    index = -1
    for i, v in enumerate(x):
        if v > t:
            index = i
            break
    return x[index] * 2.0 + index


def _signed_sum(x, y, t):
    total = 0.0
    for a, b in zip(x, y, strict=True):
        if a * b > t:  # noqa: SIM108 (a soft if statement)
            total = total + a
        else:
            total = total - b
    return total + a  # (Python's loop variable: the last item)


def _weighted_else(x, y, t):
    for i, v in enumerate(x, 1):
        if v > t:
            found = v * i
            break
    else:
        found = -1.0
    return found


def _pair_return(x, y, t):
    for k, (a, b) in enumerate(zip(x, y[:-1], strict=False)):
        if a + b > t:
            return a * k
    return 0.0 * t


@pytest.mark.parametrize("program", [_first_index_above, _signed_sum, _weighted_else, _pair_return])
def test_loops_over_enumerate_and_zip_of_arrays_are_rolled(program, x64):
    rng = np.random.default_rng(6)
    x, y = (jnp.asarray(rng.normal(0.0, 1.0, 9)) for _ in range(2))
    t = jnp.asarray(1.0)
    text = _jaxpr_text(program, (x, y, t))
    assert "scan[" in text or "while[" in text
    (value, grads), (value_unrolled, grads_unrolled) = (
        _outputs_and_gradients(
            sf.relax(program, softness=0.3, unroll=u), (x, y, t), (0, 1, 2), compiled=u is None
        )
        for u in (None, True)
    )
    np.testing.assert_allclose(value, value_unrolled, rtol=1e-12)
    for a, b in zip(grads, grads_unrolled, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    for threshold in (-5.0, 1.0, 5.0):
        args = (x, y, jnp.asarray(threshold))
        assert float(jax.jit(sf.relax(program, mode="hard"))(*args)) == float(program(*args))


def _break_after_warm_up(x, t):
    s = 0.0
    for i in range(x.shape[0]):
        if i >= 3 and x[i] > t:
            break
        s = s + x[i] * (i + 1)
    return s + i  # (Python's loop variable: where it broke, or the last index)


def _break_on_schedule(x, t):
    s = 0.0
    for i in range(x.shape[0]):
        if (i % 3 == 0 and x[i] > t) or i == 7:
            break
        s = s + x[i]
    return s


def _row_at_the_break(x, t):
    for row in x.reshape(-1, 2):
        if row[0] > t:
            break
    return row[1] * 2.0


@pytest.mark.parametrize("program", [_break_after_warm_up, _break_on_schedule, _row_at_the_break])
def test_a_loop_that_breaks_on_its_index_or_is_read_after_it_is_rolled(program, x64):
    # Unrolled, the probe's warm-up loop compiled its gradient in 3.2 s at 10 steps and in more
    # than 95 s at 30.
    x = jnp.asarray(np.random.default_rng(7).normal(0.0, 1.0, 12))
    text = _jaxpr_text(program, (x, jnp.asarray(0.5)))
    assert "while[" in text or "scan[" in text
    for threshold in (-9.0, 0.5, 9.0):
        args = (x, jnp.asarray(threshold))
        (value, grads), (value_unrolled, grads_unrolled) = (
            _outputs_and_gradients(
                sf.relax(program, softness=0.3, unroll=u), args, (0, 1), compiled=u is None
            )
            for u in (None, True)
        )
        np.testing.assert_allclose(value, value_unrolled, rtol=1e-12, atol=1e-12)
        for a, b in zip(grads, grads_unrolled, strict=True):
            # (the rolled loop stops once the mass still running is below 1e-6)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert float(sf.relax(program, mode="hard")(*args)) == float(program(*args))
        # compiled: the same program, up to the multiply-adds XLA may fuse
        np.testing.assert_allclose(
            jax.jit(sf.relax(program, mode="hard"))(*args), program(*args), rtol=1e-14
        )


def test_a_slice_at_a_relaxed_position_is_refused_with_the_way_out():
    def prefix_sum_until(x, t):
        for i in range(x.shape[0]):
            if x[i] > t:
                break
        return jnp.sum(x[:i])

    x = jnp.linspace(-1.0, 1.0, 8)
    assert float(sf.relax(prefix_sum_until, mode="hard")(x, 0.5)) == float(prefix_sum_until(x, 0.5))
    with pytest.raises(
        sf.ConversionError, match=r"slices an array at a traced position at .*:\d+ .*jnp.arange"
    ):
        sf.relax(prefix_sum_until, softness=0.3)(x, 0.5)


def _uses_index_as_float(x):
    t = 0.0 * x
    for i in range(6):
        t = t + jnp.sin(x * i * 0.1)  # x * i meets x at once: fine
        if x > i * 0.5:  # i * 0.5 is a Python float unrolled
            t = t + 1.0
    return t


def _indexes_a_python_list(x):
    weights = [0.5, 1.5, -1.0, 2.0, 0.25, 3.0]
    s = 0.0 * x
    for i in range(6):
        if x > weights[i]:
            s = s + weights[i]
    return s


def _power_of_index(x):
    s = 0.0 * x
    for i in range(6):
        s = s + x**i
    return s


def _python_counter(x):
    count = 0
    s = 0.0 * x
    for _ in range(6):
        count += 1
        if x > count:
            s = s + x
    return s * count


def _appends(x):
    out = []
    for i in range(6):
        if x > i:
            x = x - 1.0
        out.append(x)
    return jnp.stack(out)


def _reads_the_list_it_appends_to(x):
    out = [x]
    for _ in range(6):
        if x > out[-1] - 0.5:  # the last item appended: rolled, this would be the first
            x = x - 1.0
        out.append(x + 0.25)
    return jnp.stack(out)


def _reads_its_list_in_an_inner_loop(x):
    out = [x]
    for _ in range(6):
        for j in range(5):
            if x > out[0] * 0.1 * j:
                x = x - 0.3
        out.append(x)
    return jnp.stack(out)


def _stops_after(passes: int):
    """A loop with a soft ``if`` and a static break after ``passes`` passes: the first passes run
    as Python while the state settles (up to two), the rest unrolled."""

    def stops(x):
        s = 0.0
        k = 0
        for v in jnp.linspace(0.0, 1.0, 12):
            if k >= passes:  # static: a Python break
                break
            if v > x - 0.5:
                s = s + v
            k = k + 1
        return s * k

    stops.__name__ = f"_stops_after_{passes}_passes"
    return stops


def _appends_its_index(x):
    out = []
    for i in range(6):
        if x > 1.0:
            x = x - 0.5
        out.append(i)  # a Python int unrolled: rolled, an int32 array would leave the loop
    return x * jnp.stack(out)


def _appends_python_numbers(x):
    out = []
    for _ in range(6):
        if x > 1.0:
            x = x - 1.0
        out.append(1.0)
    return x * jnp.stack(out)


def _appends_to_an_alias_it_reads(x):
    out = []
    seen = out
    for _ in range(6):
        if x > 0.5 * len(seen):
            x = x - 1.0
        out.append(x)
    return jnp.stack(out)


def _grows(x):
    s = jnp.zeros(0)
    for i in range(6):
        s = jnp.append(s, x * i)
    return s


def _index_after_the_loop(x):
    s = 0.0 * x
    for i in range(6):
        s = s + x[i] * (i + 1)
    return s + i


def _over_rows(x):
    s = 0.0
    for row in x:
        if row[0] > row[1]:
            s = s + row[0]
    return s


def _records_a_trajectory(x):
    out = [x]  # what the list held before the loop stays first
    pairs = []
    for i in range(8):
        if x > 1.0:  # (an if statement, the subject of these tests)  # noqa: SIM108
            x = x * 0.5
        else:
            x = x + 0.75
        out.append(x)
        pairs.append((x, x * i))
    return jnp.stack(out), pairs


def _appends_in_nested_loops(x):
    out = []
    for i in range(6):
        for j in range(5):  # rolled too: each of its passes appends to the outer loop's list
            if x > j:
                x = x - 0.5
            out.append(x * (i + 1))
        out.extend([x, 2.0 * x])
    return jnp.stack(out)


def _appends_in_a_short_inner_loop(x):
    weights = [0.5, 1.0, 2.0]  # read in the loop, not appended to: carried as it is
    out = []
    for _ in range(7):
        for w in weights:
            if x > w:
                x = x - w
            out.append(x)
    return jnp.stack(out)


def _appends_rows(rows):
    out = []
    for row in rows:
        if row[0] > row[1]:
            row = row[::-1]
        out.append(row)
    return jnp.stack(out)


@pytest.mark.parametrize(
    ("fn", "arg"),
    [
        (_records_a_trajectory, 1.7),
        (_appends_in_nested_loops, 6.2),
        (_appends_in_a_short_inner_loop, 5.3),
        (_appends_rows, np.arange(12.0).reshape(6, 2) % 5),
    ],
)
def test_a_loop_that_appends_to_a_list_is_rolled(fn, arg):
    """The scan stacks what each pass appends and the list gets its rows after the loop: the
    same list of arrays as unrolled (hard: the program; soft: values and gradients of the
    unrolled relaxation), from one compiled body."""
    arg = jnp.asarray(arg, jnp.float32)
    assert _jaxpr_text(fn, (arg,)).count("scan[") >= 1
    assert "scan[" not in _jaxpr_text(fn, (arg,), unroll=True)
    plain = fn(arg)
    for mode in ("hard", "straight_through"):
        relaxed = jax.jit(sf.relax(fn, mode=mode))(arg)
        assert jax.tree_util.tree_structure(relaxed) == jax.tree_util.tree_structure(plain)
        jax.tree_util.tree_map(np.testing.assert_array_equal, relaxed, plain)

    def total(fn, unroll):
        soft = sf.relax(fn, softness=0.2, unroll=unroll)
        return lambda a: sum(jnp.sum(leaf) for leaf in jax.tree_util.tree_leaves(soft(a)))

    for unroll in (None, True):
        assert jax.tree_util.tree_structure(sf.relax(fn, unroll=unroll)(arg)) == (
            jax.tree_util.tree_structure(plain)
        )
    rolled, unrolled = (
        jax.jit(jax.value_and_grad(total(fn, None))),
        jax.value_and_grad(total(fn, True)),
    )
    jax.tree_util.tree_map(
        functools.partial(np.testing.assert_allclose, rtol=2e-6, atol=1e-6),
        rolled(arg),
        unrolled(arg),
    )


def test_a_list_appended_to_in_a_soft_branch_of_a_rolled_loop_is_refused():
    def keeps_large(x):
        out = []
        for i in range(6):
            if x > i:
                out.append(x)
            x = x + 1.0
        return jnp.stack(out)

    x = jnp.float32(2.5)
    assert len(sf.relax(keeps_large, mode="hard")(x)) == len(keeps_large(x))
    with pytest.raises(sf.ConversionError, match=r"`out.append\(...\)` at .*if statement"):
        sf.relax(keeps_large, softness=0.1)(x)


@pytest.mark.parametrize(
    ("fn", "arg", "rolled"),
    [
        (_uses_index_as_float, 1.3, False),
        (_indexes_a_python_list, 1.3, False),
        (_power_of_index, 1.3, False),
        (_python_counter, 2.5, False),
        (_appends, 3.5, True),
        (_reads_the_list_it_appends_to, 2.5, False),
        (_appends_python_numbers, 2.5, False),
        (_appends_its_index, 2.5, False),
        (_stops_after(2), 0.3, False),  # in the third pass, unrolled
        (_stops_after(1), 0.3, False),  # in the second pass, which runs as Python
        (_reads_its_list_in_an_inner_loop, 4.0, True),  # (the inner loops)
        (_appends_to_an_alias_it_reads, 2.5, False),
        (_grows, 1.3, False),
        (_index_after_the_loop, np.linspace(-1, 1, 6), True),
        (_over_rows, np.arange(12.0).reshape(6, 2) % 5, True),
    ],
)
def test_loops_that_need_unrolling_are_unrolled_and_exact(fn, arg, rolled):
    arg = jnp.asarray(arg, jnp.float32)
    assert ("scan[" in _jaxpr_text(fn, (arg,))) == rolled
    plain = fn(arg)
    for mode in ("hard", "straight_through"):
        np.testing.assert_array_equal(jax.jit(sf.relax(fn, mode=mode))(arg), plain)
    soft = sf.relax(fn, softness=0.2)
    np.testing.assert_allclose(soft(arg), sf.relax(fn, softness=0.2, unroll=True)(arg), rtol=1e-6)


def test_unroll_option():
    def f(x):
        for _ in range(3):
            if x > 1:
                x = x / 2
        return x

    x = jnp.float32(5.0)
    assert "scan[" not in _jaxpr_text(f, (x,))  # short: unrolled by default
    assert "scan[" in _jaxpr_text(f, (x,), unroll=False)
    assert float(sf.relax(f, unroll=False, mode="straight_through")(x)) == float(f(x))
    with pytest.raises(TypeError, match="unroll must be None, True or False"):
        sf.relax(f, unroll=1)  # type: ignore[arg-type]


def _gamble(p_win, stake, draws):
    wealth = 10.0  # a Python number: the break's test is static in the first pass only
    rounds = 0
    for u in draws:
        if wealth <= 0.0:
            break
        bet = min(stake, wealth)
        wealth = wealth + bet if u < p_win else wealth - bet
        rounds += 1
    return wealth, rounds


def test_a_soft_break_on_a_variable_that_starts_as_a_python_number_is_rolled():
    """The first pass runs as Python (its break is static there) and the rest is one loop: the
    program does not grow with the draws, and it is the unrolled relaxation."""
    p_win, stake = jnp.float32(0.45), jnp.float32(3.0)
    draws = jnp.asarray(np.random.default_rng(7).uniform(size=24), jnp.float32)

    def size(n, unroll):
        soft = sf.relax(_gamble, softness=0.1, unroll=unroll)
        return len(jax.make_jaxpr(soft)(p_win, stake, draws[:n]).eqns)

    assert size(12, None) == size(24, None)
    assert size(24, True) > 1.5 * size(12, True)
    for n in (12, 24):
        args = (p_win, stake, draws[:n])
        wealth, rounds = _gamble(*args)
        hard = jax.jit(sf.relax(_gamble, mode="hard"))(*args)
        assert (float(hard[0]), int(hard[1])) == (float(wealth), rounds)

        def loss(p, s, unroll, n=n):
            w, r = sf.relax(_gamble, softness=0.1, unroll=unroll)(p, s, draws[:n])
            return w + 0.5 * r

        rolled = jax.jit(jax.value_and_grad(functools.partial(loss, unroll=None), (0, 1)))
        unrolled = jax.value_and_grad(functools.partial(loss, unroll=True), (0, 1))
        jax.tree_util.tree_map(
            functools.partial(np.testing.assert_allclose, rtol=2e-5, atol=1e-5),
            rolled(p_win, stake),
            unrolled(p_win, stake),
        )
