"""
Crossing three terrains by gradient descent
===========================================

The pickle that starts the story: walk from A to B, 20 units to the side and 30 units down,
across three strips of terrain 10 units thick where you move at speeds 0.7, 0.3 and 0.45. Where
you cross the two inner boundaries, ``x1`` and ``x2``, decides the route; the crossing time is a
sum of Pythagoras-over-speed terms. Twenty steps of plain gradient descent (step size 1.5, from
(2, 17)) land within 0.005 of the fastest time.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import terrain
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter

# %%
# Twenty steps downhill
# ---------------------
# :func:`terrain.descent_path` runs ``optax.sgd(1.5)`` on the time, written as ordinary JAX code;
# the gradient comes from ``jax.grad``. The exact optimum (Snell's law) comes from
# :func:`terrain.fastest_crossing`.

path = terrain.descent_path()
d, v, h = terrain.CLASSIC_THICKNESSES, terrain.CLASSIC_SPEEDS, terrain.CLASSIC_OFFSET
optimum = terrain.fastest_crossing(d, v, h)
with jax.enable_x64(True):
    times = np.asarray(terrain.classic_time(jnp.asarray(path)))
    best = float(terrain.crossing_time(jnp.asarray(optimum), d, v))
print(f"after {len(path) - 1} steps: x = {path[-1].round(2)}, time {times[-1]:.4f}")
print(f"optimum: x = {optimum[:2].round(2)}, time {best:.5f}")

# %%
# The landscape of crossing times
# -------------------------------
# Every point of the plane is a route; the colours are its time. The descent path first shoots
# down the steep side of the valley, then creeps along its floor.

resolution = 120 if quick() else 300
grid1, grid2 = np.meshgrid(np.linspace(-2, 22, resolution), np.linspace(-4, 20, resolution))
with jax.enable_x64(True):
    landscape = np.asarray(terrain.classic_time(jnp.stack([grid1, grid2], axis=-1)))
fig_landscape, ax = plt.subplots(figsize=(6, 5))
levels = best + np.geomspace(0.05, landscape.max() - best, 25)
contour = ax.contourf(grid1, grid2, landscape, levels=levels, cmap="viridis_r")
fig_landscape.colorbar(contour, ax=ax, label="crossing time")
ax.plot(path[:, 0], path[:, 1], "o-", color="white", ms=3, lw=1, label="gradient descent")
ax.plot(*optimum[:2], "*", color="red", ms=12, label="optimum (Snell)")
ax.set(xlabel="$x_1$", ylabel="$x_2$", title="Crossing time over $(x_1, x_2)$")
ax.legend(loc="upper right")
save_figure(fig_landscape, "terrain_classic_landscape")

# %%
# The objective improves fast, then slower
# ----------------------------------------

fig_objective, ax = plt.subplots(figsize=(6, 3.5))
ax.semilogy(times - best, "o-")
ax.set(xlabel="iteration", ylabel="time − optimal time", title="Gradient descent on the route")
ax.grid(alpha=0.3)
save_figure(fig_objective, "terrain_classic_objective")

# %%
# The routes bend towards the optimum
# -----------------------------------
# Depth runs downwards from A to B; the middle strip is the slow one, so the best route crosses
# it steeply and makes up the distance in the fast top strip.


def route(crossings):
    x = np.concatenate([crossings, [h - crossings[0] - crossings[1]]])
    return np.concatenate([[0.0], np.cumsum(x)]), np.array([0.0, 10.0, 20.0, 30.0])


def draw_terrain(ax):
    for k, speed in enumerate(v):
        ax.axhspan(10 * k, 10 * (k + 1), color=plt.cm.YlGn(speed / max(v)), alpha=0.6)
        ax.text(-3.5, 10 * k + 5, f"speed {speed}", va="center", fontsize=8)
    ax.set(xlim=(-4, 24), ylim=(31, -1), xlabel="lateral position", ylabel="depth")


fig_routes, ax = plt.subplots(figsize=(6, 5))
draw_terrain(ax)
shown = [0, 1, 2, 4, 8, 20]
for step, colour in zip(shown, plt.cm.plasma(np.linspace(0, 0.85, len(shown))), strict=True):
    ax.plot(*route(path[step]), "o-", color=colour, label=f"step {step}: {times[step]:.2f}")
ax.plot(*route(optimum[:2]), "k--", label=f"optimum: {best:.3f}")
ax.legend(fontsize=8, loc="upper right")
ax.set_title("Routes from A (top left) to B (bottom right)")
save_figure(fig_routes, "terrain_classic_routes")

# %%
# The same as an animation (saved as a GIF next to the figures).

fig_anim, ax = plt.subplots(figsize=(5, 4))
draw_terrain(ax)
(line,) = ax.plot([], [], "o-", color="crimson")
ax.plot(*route(optimum[:2]), "k--", lw=1)
label = ax.set_title("")


def show(step):
    line.set_data(*route(path[step]))
    label.set_text(f"step {step}: time {times[step]:.3f}")
    return line, label


animation = FuncAnimation(fig_anim, show, frames=len(path), blit=False)
animation.save(output_dir() / "terrain_classic_routes.gif", writer=PillowWriter(fps=4))
plt.close(fig_anim)
