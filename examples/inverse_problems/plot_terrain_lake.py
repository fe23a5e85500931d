"""
A frozen lake of unknown size
=============================

The terrain program need not be layered. Here a plain (walking speed 1) holds a frozen lake on
which one skates at speed 2.5; the program decides the speed with one soft ``if``: *if the
distance to the center is less than the radius, skate, else walk*. The fastest routes past the
lake bend towards it. From the
fastest crossing times of three routes we recover the radius of the lake, optimising the routes
and the radius together, and then check the soft program against the exact (hard) one.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import terrain
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm.auto import tqdm

import softflow as sf

jax.config.update("jax_enable_x64", True)

CENTER = jnp.array([0.5, 0.0])
LAND, ICE = 1.0, 2.5
SEGMENTS, SAMPLES = 30, 8
lanes = jnp.array([-0.32, -0.12, 0.2])  # each route runs from (0, lane) to (1, lane)

# %%
# The terrain as a program
# ------------------------
# One comparison, relaxed: ``on_ice`` is the soft truth of "distance < radius", and
# ``sf.soft_where`` blends the two slownesses (1 / speed) by it. In hard mode it is the exact
# ``if``; in soft mode the radius gets a gradient.


def lake_slowness(points, center, radius, land_speed, lake_speed, relaxation):
    """Slowness at points of a plain with one circular lake."""
    distance = jnp.sqrt(jnp.sum((points - center) ** 2, axis=-1))
    on_ice = relaxation.less(distance, radius)
    return sf.soft_where(on_ice, 1 / jnp.asarray(lake_speed), 1 / jnp.asarray(land_speed))


# %%
# Routes and their time
# ---------------------
# A route is a polyline over equally spaced positions along the way; its sideways deviations
# from the straight lane are free. The time is integrated by sampling the soft terrain program
# along every segment (:func:`terrain.polyline_time`).


def vertices(deviation, lane):
    sideways = jnp.concatenate([jnp.zeros(1), deviation, jnp.zeros(1)])
    return jnp.stack([jnp.linspace(0.0, 1.0, SEGMENTS + 1), lane + sideways], axis=-1)


def route_time(deviation, lane, radius, relaxation, samples=SAMPLES):
    def program(points):
        return lake_slowness(points, CENTER, radius, LAND, ICE, relaxation)

    return terrain.polyline_time(program, vertices(deviation, lane), samples)


all_times = jax.vmap(route_time, in_axes=(0, 0, None, None))
radius_optimiser = optax.adam(0.05)


@jax.jit
def improve_routes(deviations, radius, softness):
    """The fastest routes for the current lake: L-BFGS (optax) from the given routes."""
    relaxation = sf.Relaxation(softness)

    def total_time(deviations):
        return jnp.sum(all_times(deviations, lanes, radius, relaxation))

    return terrain.lbfgs_minimise(total_time, deviations, max_iterations=300, tolerance=1e-8)


# %%
# The survey: the fastest times past a lake of radius 0.25, in the same program at the final
# softness (routes optimised for the true lake).

true_radius, final_softness = 0.25, 0.005
deviations = jnp.zeros((lanes.size, SEGMENTS - 1))
deviations = improve_routes(deviations, true_radius, final_softness)
measured = all_times(deviations, lanes, true_radius, sf.Relaxation(final_softness))

# %%
# Fitting the radius
# ------------------
# Each outer step finds the fastest routes for the current radius, then moves the log-radius by one
# Adam step on the relative misfit of the times, with the routes held fixed (at the fastest route
# the time is stationary in the route, so this is the gradient of the fastest time). The
# softness is annealed from 0.05 to 0.005.


@jax.jit
def fit_step(log_radius, state, deviations, softness):
    # Past a lake the time is not convex in the route (round one side or the other, through or
    # past), so every step starts from the straight lanes, as the survey's routes did, rather
    # than from the last routes: they might sit in another valley.
    deviations = improve_routes(jnp.zeros_like(deviations), jnp.exp(log_radius), softness)

    def misfit(log_radius):
        predicted = all_times(deviations, lanes, jnp.exp(log_radius), sf.Relaxation(softness))
        return jnp.mean((predicted / measured - 1) ** 2)

    loss, grad = jax.value_and_grad(misfit)(log_radius)
    updates, state = radius_optimiser.update(grad, state)
    return optax.apply_updates(log_radius, updates), state, deviations, jnp.sqrt(loss)


steps = 60 if quick() else 150
softness_schedule = np.geomspace(0.05, final_softness, steps)
log_radius = jnp.log(0.1)
state = radius_optimiser.init(log_radius)
fit_deviations = jnp.zeros_like(deviations)
history = {"radius": [], "rms": [], "routes": []}
for softness in tqdm(softness_schedule, desc="fitting the lake", disable=None):
    log_radius, state, fit_deviations, rms = fit_step(log_radius, state, fit_deviations, softness)
    history["radius"].append(float(jnp.exp(log_radius)))
    history["rms"].append(float(rms))
    history["routes"].append(np.asarray(jax.vmap(vertices)(fit_deviations, lanes)))
radius = history["radius"][-1]
print(f"fitted radius {radius:.4f} (true {true_radius}), relative time misfit {rms:.1e}")

# %%
# Soft against hard
# -----------------
# The same routes timed by the exact program (``mode="hard"``: a true ``if``) with fine sampling
# agree with the soft program's times to a fraction of a percent.

soft_times = all_times(fit_deviations, lanes, radius, sf.Relaxation(final_softness))
hard_relaxation = sf.Relaxation(final_softness, mode="hard")
hard_times = jax.vmap(lambda dev, lane: route_time(dev, lane, radius, hard_relaxation, 500))(
    fit_deviations, lanes
)
gaps = np.asarray(soft_times / hard_times - 1)
for lane, gap in zip(np.asarray(lanes), gaps, strict=True):
    print(f"route at {lane:+.2f}: soft / hard time - 1 = {gap:+.1e}")

# %%
# The fitted lake and its fastest routes, and the radius during the fit.

fig, (ax_map, ax_radius) = plt.subplots(1, 2, figsize=(10, 4))
ax_map.add_patch(plt.Circle(np.asarray(CENTER), radius, color="lightblue", label="fitted lake"))
ax_map.add_patch(plt.Circle(np.asarray(CENTER), true_radius, fill=False, ls="--", label="true"))
for k, route in enumerate(history["routes"][-1]):
    ax_map.plot(
        route[:, 0], route[:, 1], color="crimson", label="fastest routes" if k == 0 else None
    )
    ax_map.plot([0, 1], [lanes[k]] * 2, ":", color="grey", lw=1)
ax_map.set(aspect="equal", xlim=(-0.05, 1.05), ylim=(-0.45, 0.35), title="Routes past the lake")
ax_map.legend(fontsize=8, loc="upper right")
ax_radius.plot(history["radius"], label="radius")
ax_radius.axhline(true_radius, color="k", ls="--", lw=1, label="true radius")
ax_radius.set(xlabel="outer step", ylabel="radius", title="Fitting the radius")
ax_misfit = ax_radius.twinx()
ax_misfit.semilogy(history["rms"], color="C1", lw=1)
ax_misfit.set_ylabel("relative time misfit", color="C1")
ax_radius.legend(loc="center right")
save_figure(fig, "terrain_lake_fit")

# %%
# The fit as an animation.

fig_anim, ax = plt.subplots(figsize=(5, 4))
ax.set(aspect="equal", xlim=(-0.05, 1.05), ylim=(-0.45, 0.35))
ax.add_patch(plt.Circle(np.asarray(CENTER), true_radius, fill=False, ls="--"))
lake = ax.add_patch(plt.Circle(np.asarray(CENTER), 0.1, color="lightblue"))
lines = [ax.plot([], [], color="crimson")[0] for _ in range(lanes.size)]
title = ax.set_title("")


def show(frame):
    lake.set_radius(history["radius"][frame])
    for line, route in zip(lines, history["routes"][frame], strict=True):
        line.set_data(route[:, 0], route[:, 1])
    title.set_text(f"step {frame}: radius {history['radius'][frame]:.3f}")
    return [lake, *lines, title]


frames = range(0, steps, max(1, steps // 40))
FuncAnimation(fig_anim, show, frames=frames).save(
    output_dir() / "terrain_lake_fit.gif", writer=PillowWriter(fps=6)
)
plt.close(fig_anim)
