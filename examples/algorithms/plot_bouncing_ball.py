"""
Aiming a bouncing ball
======================

A ball is launched from the ground. It flies, bounces, loses part of its speed at every bounce,
and stops when it can no longer bounce higher than a rest height. Where should it be launched, at
what speed and angle, to stop inside a target several bounces away?

The simulation is ordinary Python: a ``while`` loop until the ball rests and an ``if`` at every
bounce. Where the ball stops is a staircase function of the launch: a slightly faster launch can
add a whole bounce, and the stopping point jumps by the length of that bounce.
:func:`softflow.relax` converts the Python control flow and relaxes the ``while`` into a mixture
over the step at which the ball stops, so that the stopping point and the number of bounces
become smooth functions of the launch, and gradient descent can aim through the bounces. At the
end we compare with derivative-free searches on the exact program, and count what each needs to
hit the target.
"""

# %%
# The program
# -----------
# One step of flight follows the exact parabola over the time step ``DT``. When the ball ends a
# step below the ground it has hit it during the step: it leaves the ground again with the speed
# it had at the impact (known from its energy) times the restitution, and friction takes part of
# its horizontal speed. The ball comes to rest when it lands and cannot bounce higher than
# ``REST_HEIGHT`` (soft ground: it does not roll). ``miss`` is the squared distance from where
# the ball is to the target; why it is carried through the loop is explained below. The program
# lives in ``examples/bouncing_ball.py``, which the page "Which gradient to trust" uses too:
#
# .. literalinclude:: /../examples/bouncing_ball.py
#    :start-at: G = 9.81
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from bouncing_ball import MAX_STEPS, REST_HEIGHT, RESTITUTION, height, simulate, step
from matplotlib.animation import FuncAnimation, PillowWriter
from scipy.optimize import minimize
from tqdm import tqdm

import softflow as sf

# %%
# What ``relax`` does with it
# ---------------------------
# ``explain`` lists the relaxed operations: the comparison in the ``while`` condition becomes
# soft, the ``or`` a probabilistic or, and the loop a :func:`~softflow.soft_while`, a mixture
# over the step at which the ball stops, bounded by ``max_steps``. The softness is in the units
# of the comparison: metres of bounce height. The ``if`` is marked with :func:`~softflow.exact`
# and stays a real bounce, so ``landed`` is an exact truth value.
#
# Why ``not landed or``? The bounce height only drops at a landing, so the exact program stops
# at the same step without it. The relaxed loop may stop at every step where its condition is
# soft: without ``not landed`` the chance to stop would be taken at every step of every flight,
# the chances would add up over a flight, and the relaxed ball would stop early (in mid-air).
# With it, the relaxed ball can only stop where the exact one may: at a landing.
launch_speed, launch_angle, demo_target = jnp.float32(7.5), jnp.deg2rad(jnp.float32(50.0)), 13.0
relaxed = sf.relax(simulate, softness=0.01, max_steps=MAX_STEPS)
for op in relaxed.explain(launch_speed, launch_angle, demo_target):
    print(op.source.split("/")[-1], op.primitive, "->", op.rule)


# %%
# Why not relax the bounce too? A relaxed ``if`` blends its two branches, and the two branches
# of a bounce have opposite vertical speeds. Near the threshold of the condition (here: a ball
# that is barely falling) the blend is half a bounce, half a fall, and the ball leaves the ground
# hardly moving. A few such half bounces take all its energy: the relaxed program would be a
# different physics, not a smoothed one.
def bounce_if_falling(vy):
    if vy < 0.0:
        vy = -RESTITUTION * vy
    return vy


relaxed_bounce = sf.relax(bounce_if_falling, softness=0.1)
for vy in (-2.0, -0.05):
    after = float(relaxed_bounce(vy))
    bounced = -RESTITUTION * vy
    print(f"falling at {-vy:.2f} m/s: leaves at {after:+.3f} m/s (a real bounce: {bounced:+.3f})")

# %%
# In ``mode="hard"`` the relaxed program is the program itself: the same bounces, and the same
# stopping point up to float32 rounding. (Not always to the bit: plain Python runs one operation
# at a time, while XLA compiles the body of the loop and fuses some multiply-adds, which round
# differently; the same program written with ``lax.while_loop`` gives hard mode's digits.)
exact = sf.relax(simulate, mode="hard")
for speed, angle in [(7.5, 50.0), (5.0, 30.0), (9.0, 65.0)]:
    args = (jnp.float32(speed), jnp.deg2rad(jnp.float32(angle)), jnp.float32(demo_target))
    python_x, python_bounces, python_miss = simulate(*args)  # plain Python: `while` on numbers
    hard_x, hard_bounces, hard_miss = exact(*args)
    assert int(python_bounces) == int(hard_bounces)
    np.testing.assert_allclose(hard_x, python_x, rtol=1e-5)
    np.testing.assert_allclose(hard_miss, python_miss, rtol=1e-5)
    print(
        f"{speed} m/s at {angle} deg: stops at {float(hard_x):.4f} m after {int(hard_bounces)} "
        f"bounces (plain Python: {float(python_x):.4f} m, {int(python_bounces)} bounces)"
    )


# %%
# The exact flight, recorded
# --------------------------
# For the figures we also want the path, so the same loop records where the ball is at every
# step. Run exactly (``mode="hard"``) and jitted, it is fast enough to draw many flights.
def flight(speed, angle):
    """The ball's position at every step until it rests, and the number of steps."""
    x = y = jnp.zeros_like(speed)
    vx = speed * jnp.cos(angle)
    vy = speed * jnp.sin(angle)
    path = jnp.zeros((MAX_STEPS + 1, 2))
    steps = 0
    landed = jnp.array(False)
    while not landed or height(y, vy) > REST_HEIGHT:
        x, y, vx, vy, landed = step(x, y, vx, vy)
        steps = steps + 1
        path = path.at[steps].set(jnp.stack([x, y]))
    return path, steps


exact_flight = jax.jit(sf.relax(flight, mode="hard"))


def exact_path(speed, angle):
    path, steps = exact_flight(jnp.float32(speed), jnp.float32(angle))
    return np.asarray(path[: int(steps) + 1])


# %%
# Where the ball stops, as a function of the launch speed
# -------------------------------------------------------
# At a fixed angle the exact stopping point is a staircase of continuous pieces: it grows with
# the speed, and jumps up where one more bounce fits in (``bounces`` counts every time the ball
# hits the ground, the last one included). The relaxed stopping point is smooth across the
# jumps, and so is the expected number of bounces: at a jump the relaxed ball stops at the
# landing before with probability one half, and the ramp around the jump narrows with the
# softness.
relaxed_batch = jax.jit(
    jax.vmap(
        lambda speed, angle, target, softness: sf.relax(
            simulate, softness=softness, max_steps=MAX_STEPS
        )(speed, angle, target),
        in_axes=(0, 0, 0, None),
    )
)
exact_batch = jax.jit(jax.vmap(exact))

softnesses = (0.1, 0.03, 0.01)
angle_50 = jnp.deg2rad(jnp.float32(50.0))
speeds = jnp.linspace(4.0, 10.0, 300 if quick() else 600, dtype=jnp.float32)
angles = jnp.full_like(speeds, angle_50)
zeros = jnp.zeros_like(speeds)
exact_x, exact_bounces, _ = exact_batch(speeds, angles, zeros)
fig, (ax_x, ax_n) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_x.plot(speeds, exact_x, ".", color="black", markersize=2, label="exact")
ax_n.plot(speeds, exact_bounces, ".", color="black", markersize=2, label="exact")
for softness in softnesses:
    x, bounces, _ = relaxed_batch(speeds, angles, zeros, softness)
    ax_x.plot(speeds, x, label=f"relaxed, softness {softness}")
    ax_n.plot(speeds, bounces, label=f"relaxed, softness {softness}")
ax_x.set_xlabel("launch speed (m/s), angle 50 deg")
ax_x.set_ylabel("where the ball stops (m)")
ax_n.set_xlabel("launch speed (m/s), angle 50 deg")
ax_n.set_ylabel("bounces")
ax_x.legend()
fig.tight_layout()
save_figure(fig, "bouncing_ball_landing")

# %%
# Exact and relaxed: two launches across a jump
# ---------------------------------------------
# Two launches 0.2 m/s apart, on either side of the last jump: the faster one has just enough
# energy for one more bounce. The relaxed program (its expected stopping point is marked under
# the ground, for each softness) sees them as neighbours: with a large softness it stops both
# between the two exact stops, and the smaller the softness, the closer each is to its own.
last_jump = int(np.flatnonzero(np.diff(np.asarray(exact_bounces)) > 0)[-1])
pair = np.asarray(speeds[last_jump]) + np.array([-0.1, 0.1], np.float32)
fig, ax = plt.subplots(figsize=(10, 3.6))
for k, colour in enumerate(("tab:blue", "tab:red")):
    speed = pair[k]
    path = exact_path(speed, angle_50)
    exact_count = int(exact(jnp.float32(speed), angle_50, jnp.float32(0.0))[1])
    label = f"exact flight, {speed:.3f} m/s ({exact_count} bounces)"
    ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=1.2, label=label)
    ax.plot(path[-1, 0], 0.0, "o", color=colour, markersize=8)
    for softness, marker in zip(softnesses, ("v", "s", "D"), strict=True):
        x, bounces, _ = relaxed_batch(
            jnp.array([speed]), jnp.array([angle_50]), jnp.zeros(1), softness
        )
        ax.plot(
            float(x[0]),
            -0.25,
            marker,
            color=colour,
            markerfacecolor="none",
            label=f"relaxed stop, softness {softness} ({float(bounces[0]):.2f} bounces)",
        )
ax.axhline(0.0, color="black", linewidth=0.8)
ax.set_xlabel("x (m)")
ax.set_ylabel("y (m)")
ax.legend(fontsize=7, ncol=2, loc="upper right")
fig.tight_layout()
save_figure(fig, "bouncing_ball_flights")

# %%
# Aiming: the loss
# ----------------
# The launch is searched in a box, 4 to 10 m/s and 20 to 70 degrees, through coordinates
# ``z`` in the unit square. A target is 0.5 m wide. The loss is the ``miss`` that ``simulate``
# returns: the relaxed loop returns, for every variable it carries, its average over the step at
# which the ball stops, so ``miss`` is the *expected* squared distance to the target. The square
# of the expected stopping point would be a worse loss: a mixture of "one bounce short" and
# "one bounce long" can have its mean right on the target and cost nothing, while no real launch
# stops there.
SPEED_RANGE = (4.0, 10.0)
ANGLE_RANGE = (np.deg2rad(20.0), np.deg2rad(70.0))
HALF_WIDTH = 0.25


def launch(z):
    """Speed and angle from coordinates in the unit square."""
    speed = SPEED_RANGE[0] + (SPEED_RANGE[1] - SPEED_RANGE[0]) * z[..., 0]
    angle = ANGLE_RANGE[0] + (ANGLE_RANGE[1] - ANGLE_RANGE[0]) * z[..., 1]
    return speed, angle


def relaxed_miss(z, target, softness):
    relaxed = sf.relax(simulate, softness=softness, max_steps=MAX_STEPS)
    return relaxed(*launch(z), target)[2]


def exact_miss(z, target):
    return exact(*launch(z), target)[2]


# %%
# The exact and the relaxed loss over the box, for the demo target at 13 m. The exact one has
# cliffs where the number of bounces changes; the relaxed one is smooth. The grid also checks
# that ``MAX_STEPS`` is enough for every launch in the box.
grid = 60 if quick() else 120
grid_z = jnp.stack(jnp.meshgrid(jnp.linspace(0, 1, grid), jnp.linspace(0, 1, grid)), -1)
flat_z = grid_z.reshape(-1, 2)
grid_speed, grid_angle = launch(flat_z)
grid_targets = jnp.full(len(flat_z), demo_target, jnp.float32)
_, steps_needed = jax.jit(jax.vmap(sf.relax(flight, mode="hard")))(grid_speed, grid_angle)
assert int(jnp.max(steps_needed)) < MAX_STEPS, int(jnp.max(steps_needed))
exact_landscape = exact_batch(grid_speed, grid_angle, grid_targets)[2].reshape(grid, grid)
relaxed_landscape = relaxed_batch(grid_speed, grid_angle, grid_targets, 0.1)[2].reshape(grid, grid)
inside_fraction = float(jnp.mean(jnp.sqrt(exact_landscape) <= HALF_WIDTH))
print(f"launches of the grid that stop inside the demo target: {inside_fraction:.1%}")

# %%
# Aiming with gradients
# ---------------------
# Targets are drawn at random between 4 and 18 m, launches start at random in the box, and the
# first target is the demo one, from a short, steep launch. Adam descends on the relaxed loss
# while the softness is annealed from 0.1 to 0.01 m. At every iteration the exact program
# checks the current launch (this is cheap, see the costs below); a target is hit when the exact
# ball stops inside it, and its descent stops there. For comparison, the same descent follows
# the gradient of the *exact* program: it exists between the cliffs (forward mode: JAX cannot
# reverse-differentiate a ``while`` loop whose exit is exact), but it does not see the jumps.
n_targets = 10 if quick() else 50
budget = 100 if quick() else 150  # iterations of a descent, evaluations of a search
key_targets, key_starts = jax.random.split(jax.random.PRNGKey(0))
targets = jax.random.uniform(key_targets, (n_targets,), minval=4.0, maxval=18.0)
targets = targets.at[0].set(demo_target)
starts = jax.random.uniform(key_starts, (n_targets, 2)).at[0].set(jnp.array([0.25, 0.9]))
softness_schedule = optax.exponential_decay(
    0.1, transition_steps=budget, decay_rate=0.1, end_value=0.01
)
relaxed_gradient = jax.jit(jax.vmap(jax.grad(relaxed_miss), in_axes=(0, 0, None)))
exact_gradient = jax.jit(jax.vmap(jax.jacfwd(exact_miss)))
exact_landing = jax.jit(lambda z, targets: exact_batch(*launch(z), targets)[0])


def descend(gradient, name):
    """Adam from ``starts``; the iteration (1, 2, ...) at which each target is hit, 0 if never."""
    optimiser = optax.adam(0.05)
    z, state = starts, optimiser.init(starts)
    hit_at = np.zeros(n_targets, int)
    demo_path = []
    for iteration in tqdm(range(1, budget + 1), desc=name, disable=None):
        inside = np.abs(np.asarray(exact_landing(z, targets) - targets)) <= HALF_WIDTH
        hit_at[(hit_at == 0) & inside] = iteration
        if hit_at[0] in (0, iteration):
            demo_path.append(np.asarray(z[0]))  # the demo descent, up to its hit
        if np.all(hit_at > 0):
            break
        softness = softness_schedule(iteration - 1)
        updates, state = optimiser.update(gradient(z, targets, softness), state)
        moved = jnp.clip(optax.apply_updates(z, updates), 0.0, 1.0)
        z = jnp.where(jnp.asarray(hit_at > 0)[:, None], z, moved)  # a hit target stays put
    return hit_at, np.array(demo_path), z


relaxed_hits, demo_path, final_z = descend(relaxed_gradient, "relaxed gradient")
exact_hits, _, exact_final = descend(lambda z, t, softness: exact_gradient(z, t), "exact gradient")

# %%
# The demo target: the final launch, run through the exact program, stops inside it.
demo_x, demo_bounces, _ = exact(*launch(final_z[0]), jnp.float32(demo_target))
demo_speed, demo_angle = launch(final_z[0])
print(
    f"demo target {demo_target} m: launch {float(demo_speed):.2f} m/s at "
    f"{float(jnp.rad2deg(demo_angle)):.1f} deg, the exact ball stops at {float(demo_x):.2f} m "
    f"after {int(demo_bounces)} bounces (hit at iteration {relaxed_hits[0]})"
)
assert relaxed_hits[0] > 0 and abs(float(demo_x) - demo_target) <= HALF_WIDTH


# %%
# Derivative-free search on the exact program
# -------------------------------------------
# Two searches that only run the exact program: random search (launches drawn uniformly in the
# box until one stops inside the target) and Nelder-Mead (scipy, from the same start as the
# descents), each with the same budget of evaluations as the descents have iterations.
rng = np.random.default_rng(0)
candidates = jnp.asarray(rng.uniform(size=(n_targets, budget, 2)), jnp.float32)
landings = jax.vmap(lambda z, target: exact_landing(z, jnp.full(budget, target)))(
    candidates, targets
)
inside = np.abs(np.asarray(landings) - np.asarray(targets)[:, None]) <= HALF_WIDTH
random_hits = np.where(inside.any(axis=1), inside.argmax(axis=1) + 1, 0)

exact_one = jax.jit(lambda z, target: exact(*launch(z), target))


def nelder_mead(start, target):
    """Nelder-Mead on the exact squared miss; the evaluation (1, 2, ...) that hits, 0 if none."""
    evaluations, hit_at = 0, 0

    def loss(z):
        nonlocal evaluations, hit_at
        evaluations += 1
        x, _, miss = exact_one(jnp.asarray(np.clip(z, 0.0, 1.0), jnp.float32), target)
        if hit_at == 0 and abs(float(x) - float(target)) <= HALF_WIDTH:
            hit_at = evaluations
        return float(miss)

    minimize(loss, np.asarray(start), method="Nelder-Mead", options={"maxfev": budget})
    return hit_at


nelder_mead_hits = np.array(
    [nelder_mead(start, target) for start, target in zip(starts, targets, strict=True)]
)


# %%
# What each costs
# ---------------
# The cost of one evaluation of each kind, for one target (timed in a batch over the targets,
# on this machine): an exact run, a relaxed gradient (the soft loop runs ``MAX_STEPS`` steps and
# is then differentiated), an exact forward-mode gradient. A descent pays one gradient and one
# exact check per iteration.
def seconds_per_target(fn, *args, repeats=20):
    jax.block_until_ready(fn(*args))
    begin = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - begin) / repeats / n_targets


cost_exact = seconds_per_target(exact_landing, starts, targets)
cost_relaxed = seconds_per_target(relaxed_gradient, starts, targets, 0.01)
cost_forward = seconds_per_target(exact_gradient, starts, targets)

relaxed_ratio, forward_ratio = cost_relaxed / cost_exact, cost_forward / cost_exact
print(f"one relaxed gradient costs {relaxed_ratio:.0f} exact runs of the program, one")
print(f"forward-mode exact gradient {forward_ratio:.0f} (timed on this machine)")
rows = [  # method, first hits, cost of one gradient in exact runs
    ("relaxed gradient (sf.relax)", relaxed_hits, relaxed_ratio),
    ("exact gradient (forward mode)", exact_hits, forward_ratio),
    ("random search, exact program", random_hits, 0.0),
    ("Nelder-Mead, exact program", nelder_mead_hits, 0.0),
]
print(f"\n{n_targets} targets 0.5 m wide between 4 and 18 m, budget {budget} per target")
print(f"{'method':30s} {'hit':>7s} {'exact runs':>11s} {'gradients':>10s} {'cost':>7s}")
for name, hits, gradient_cost in rows:
    found = hits[hits > 0]
    gradients = (found - 1) * (gradient_cost > 0)  # a descent checks its start first
    cost = found + gradients * gradient_cost
    medians = [float(np.median(v)) if len(v) else float("nan") for v in (found, gradients, cost)]
    print(
        f"{name:30s} {len(found):3d}/{n_targets:<3d} {medians[0]:11.1f} {medians[1]:10.1f} "
        f"{medians[2]:7.0f}"
    )
print("medians over the targets hit; cost: exact runs plus gradients, in exact runs")

# %%
# Read the table for what it is. Relaxing the loop is what makes the descent work here. Between
# two cliffs a flatter launch carries the ball further, and the exact gradient says so,
# correctly; but a flatter launch also loses bounces, and only the relaxed gradient sees that.
# The descents on the exact gradient that miss are led to the corner of the box:
missed = exact_hits == 0
cornered = missed & np.all(np.abs(np.asarray(exact_final) - np.array([1.0, 0.0])) < 1e-6, axis=1)
print(f"exact-gradient descents that missed: {missed.sum()}, of which {cornered.sum()} ended at")
print(
    f"the fastest, flattest launch ({SPEED_RANGE[1]} m/s at {np.rad2deg(ANGLE_RANGE[0]):.0f} deg)"
)

# %%
# But with two parameters and a program this cheap, random search on the exact program is the
# cheapest way to hit a target: a target covers a few percent of the box (see the grid above),
# and one relaxed gradient costs tens of exact runs (the soft loop runs all ``MAX_STEPS`` steps
# and is then differentiated). Gradients pay off with many parameters, where a random launch is
# almost never good, and where a run is expensive compared to its gradient.

# %%
# The demo descent over the two landscapes (iterations as dots, from the white start).
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
extent = (SPEED_RANGE[0], SPEED_RANGE[1], np.rad2deg(ANGLE_RANGE[0]), np.rad2deg(ANGLE_RANGE[1]))
demo_speeds, demo_angles = launch(demo_path)
for ax, landscape, title in zip(
    axes,
    (exact_landscape, relaxed_landscape),
    ("exact squared miss", "relaxed squared miss, softness 0.1"),
    strict=True,
):
    image = ax.imshow(
        np.sqrt(np.asarray(landscape)),
        origin="lower",
        extent=extent,
        aspect="auto",
        cmap="viridis_r",
        vmax=8.0,
    )
    ax.plot(demo_speeds, np.rad2deg(demo_angles), ".-", color="tab:red", markersize=3)
    ax.plot(demo_speeds[0], np.rad2deg(demo_angles[0]), "o", color="white")
    ax.set_title(title)
    ax.set_xlabel("launch speed (m/s)")
axes[0].set_ylabel("launch angle (deg)")
fig.colorbar(image, ax=axes, label=f"(root mean square) distance to {demo_target} m (m)")
save_figure(fig, "bouncing_ball_landscape")

# %%
# The demo descent as the exact ball sees it (saved as a GIF).
fig_anim, ax_anim = plt.subplots(figsize=(8, 3))
ax_anim.axvspan(demo_target - HALF_WIDTH, demo_target + HALF_WIDTH, color="tab:green", alpha=0.3)
ax_anim.axhline(0.0, color="black", linewidth=0.8)
(line,) = ax_anim.plot([], [], color="tab:blue")
(stop,) = ax_anim.plot([], [], "o", color="tab:blue")
ax_anim.set_xlim(0.0, 20.0)
ax_anim.set_ylim(-0.2, 4.5)
ax_anim.set_xlabel("x (m)")
title = ax_anim.set_title("")
fig_anim.tight_layout()
frames = range(0, len(demo_path), max(1, len(demo_path) // 40))  # the last is the hit
frames = sorted({*frames, len(demo_path) - 1})


def draw(frame):
    speed, angle = launch(demo_path[frame])
    path = exact_path(speed, angle)
    line.set_data(path[:, 0], path[:, 1])
    stop.set_data([path[-1, 0]], [0.0])
    title.set_text(
        f"iteration {frame + 1}: {float(speed):.2f} m/s at "
        f"{float(np.rad2deg(angle)):.1f} deg, stops at {path[-1, 0]:.2f} m"
    )
    return [line, stop, title]


animation = FuncAnimation(fig_anim, draw, frames=frames, blit=False)
animation.save(output_dir() / "bouncing_ball.gif", writer=PillowWriter(fps=6))
plt.show()
