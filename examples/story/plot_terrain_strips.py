"""
The fastest crossing of many terrains
=====================================

With N strips the route has N - 1 free crossing points, and the time is still a sum of
Pythagoras-over-speed terms. :func:`terrain.fastest_crossing` minimises it with optax's L-BFGS in
float64. The answer obeys Snell's law of refraction: :math:`\\sin\\theta_i / v_i` is the same in
every strip, as it is for light passing through layers of glass.
"""

import matplotlib.pyplot as plt
import numpy as np
import terrain
from _gallery import quick, save_figure
from tqdm.auto import tqdm

# %%
# A terrain of eight strips
# -------------------------
# Random thicknesses and speeds (seeded), and a fan of end points B at different lateral offsets.

rng = np.random.default_rng(7)
strips = 8
thicknesses = rng.uniform(0.5, 2.0, strips)
speeds = rng.uniform(0.5, 3.0, strips)
depth = thicknesses.sum()
offsets = np.linspace(-1.0, 3.0, 5 if quick() else 9) * depth
routes = [
    terrain.fastest_crossing(thicknesses, speeds, h)
    for h in tqdm(offsets, desc="fastest crossings", disable=None)
]

fig_routes, ax = plt.subplots(figsize=(7, 4.5))
tops = np.concatenate([[0.0], np.cumsum(thicknesses)])
span = (offsets.min() - 0.1 * depth, offsets.max() + 0.1 * depth)
for k, speed in enumerate(speeds):
    ax.axhspan(tops[k], tops[k + 1], color=plt.cm.YlGn(speed / speeds.max()), alpha=0.7)
    ax.text(span[0], 0.5 * (tops[k] + tops[k + 1]), f" v = {speed:.2f}", va="center", fontsize=7)
for h, x in zip(offsets, routes, strict=True):
    ax.plot(np.concatenate([[0.0], np.cumsum(x)]), tops, "-", color="crimson", lw=1.5)
    ax.plot([0.0, h], [0.0, depth], ":", color="grey", lw=1)
ax.set(xlim=span, ylim=(depth, 0), xlabel="lateral position", ylabel="depth")
ax.set_title("Fastest routes (red) and straight lines (dotted) from A to several B")
save_figure(fig_routes, "terrain_strips_routes")

# %%
# Snell's law check
# -----------------
# On every fastest route the ray parameter :math:`\sin\theta_i / v_i` is one number; the spread
# across strips is at the level of floating-point rounding.

fig_snell, ax = plt.subplots(figsize=(7, 3.5))
for h, x in zip(offsets, routes, strict=True):
    p = terrain.ray_parameters(x, thicknesses, speeds)
    spread = np.max(np.abs(p - p.mean())) * speeds.min()
    ax.plot(np.arange(strips), p, "o-", label=f"B at {h:+.1f}: spread {spread:.0e}")
    print(f"offset {h:+7.2f}: sin(θ)/v spread relative to max slowness {spread:.1e}")
ax.set(xlabel="strip", ylabel=r"$\sin\theta_i / v_i$", title="The same in every strip")
ax.legend(fontsize=7, ncol=2)
save_figure(fig_snell, "terrain_strips_snell")
