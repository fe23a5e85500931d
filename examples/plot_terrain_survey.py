"""
Finding hidden boundaries from crossing times
=============================================

Turn the question around: the speeds of three layers are known, their boundaries are not, and a
survey measured the fastest crossing time from A at the surface to B at the bottom for several
lateral offsets (a refraction survey). Written as a program, the terrain picks the speed at a
point with soft comparisons of its depth against the boundaries (``sf.greater`` and
``sf.soft_switch``), so the crossing time has a gradient with respect to the boundaries and
:func:`terrain.fit_boundaries` can move them until the predicted times match the measured ones.
"""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import matplotlib.pyplot as plt
import numpy as np
import terrain
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter

# %%
# A synthetic survey
# ------------------
# The measured times are the exact fastest-crossing times of the true layers
# (:func:`terrain.survey_times`), once as they are and once with 1 % noise.

speeds = np.array([1.0, 2.0, 3.5])
depth = 2.0
truth = np.array([0.6, 1.4])
offsets = np.linspace(0.0, 6.0, 8)
times = terrain.survey_times(offsets, truth, speeds, depth)
noisy = times * (1 + 0.01 * np.random.default_rng(1).standard_normal(times.size))

# %%
# The fit
# -------
# Each outer iteration re-solves the fastest route for every offset in the current soft terrain,
# then takes an L-BFGS step on the boundaries. The softness is annealed from 10 % to 0.1 % of the
# depth: a blurred boundary is felt from afar, a sharp one is where the truth is.

options = {"iterations_per_softness": 6} if quick() else {}
fit = terrain.fit_boundaries(offsets, times, speeds, depth, progress=True, **options)
noisy_fit = terrain.fit_boundaries(offsets, noisy, speeds, depth, progress=True, **options)
for name, result in (("noiseless", fit), ("1 % noise", noisy_fit)):
    print(
        f"{name}: boundaries {result.boundaries.round(3)} (true {truth}), errors "
        f"{np.abs(result.boundaries - truth).max() / depth:.2%} of the depth, relative time "
        f"residual {result.relative_rms:.1e}"
    )

# %%
# The boundaries move to their true positions
# -------------------------------------------

fig_fit, (ax_boundaries, ax_residual) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, result, style in (("noiseless", fit, "-"), ("1 % noise", noisy_fit, "--")):
    for k in range(truth.size):
        ax_boundaries.plot(
            result.history["boundaries"][:, k], style, color=f"C{k}", label=f"{name}, {k + 1}"
        )
    ax_residual.semilogy(result.history["relative_rms"], style, color="k", label=name)
for k, value in enumerate(truth):
    ax_boundaries.axhline(value, color=f"C{k}", lw=3, alpha=0.3)
ax_boundaries.set(
    xlabel="outer iteration", ylabel="boundary depth", title="Boundaries (true: bands)"
)
ax_boundaries.invert_yaxis()
ax_boundaries.legend(fontsize=7)
ax_residual.axhline(0.01, color="grey", lw=1, ls=":", label="noise level")
ax_residual.set(xlabel="outer iteration", ylabel="relative RMS of time residuals")
ax_residual.set_title("Fit residual")
ax_residual.legend(fontsize=8)
save_figure(fig_fit, "terrain_survey_fit")

# %%
# Residuals per offset after the fit: the noiseless fit matches to the discretisation error of
# the soft program, the noisy one to the noise.

fig_residuals, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(offsets, fit.predicted_times / times - 1, "o-", label="noiseless")
ax.plot(offsets, noisy_fit.predicted_times / noisy - 1, "s--", label="1 % noise")
ax.axhline(0, color="grey", lw=1)
ax.set(xlabel="lateral offset of B", ylabel="predicted / measured − 1")
ax.legend()
save_figure(fig_residuals, "terrain_survey_residuals")

# %%
# The fit as an animation: the fastest routes of the current terrain, and its boundaries.

fig_anim, ax = plt.subplots(figsize=(6, 3.5))
ax.set(xlim=(-0.2, offsets.max() + 0.2), ylim=(depth, 0), xlabel="lateral", ylabel="depth")
for value in truth:
    ax.axhline(value, color="k", lw=4, alpha=0.15)
boundary_lines = [ax.axhline(0, color="C0") for _ in truth]
route_lines = [ax.plot([], [], color="crimson", lw=1)[0] for _ in offsets]
title = ax.set_title("")


def show(frame):
    for line, value in zip(boundary_lines, fit.history["boundaries"][frame], strict=True):
        line.set_ydata([value, value])
    for line, route in zip(route_lines, fit.history["routes"][frame], strict=True):
        line.set_data(route[:, 0], route[:, 1])
    title.set_text(f"iteration {frame}, softness {fit.history['softness'][frame]:.3f}")
    return [*boundary_lines, *route_lines, title]


animation = FuncAnimation(fig_anim, show, frames=len(fit.history["softness"]))
animation.save(output_dir() / "terrain_survey_fit.gif", writer=PillowWriter(fps=5))
plt.close(fig_anim)
