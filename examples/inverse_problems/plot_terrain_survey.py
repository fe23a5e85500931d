"""
Finding hidden boundaries from crossing times
=============================================

Turn the question around: the speeds of the layers of a terrain are known, their boundaries
are not, and a survey measured the fastest crossing time from A at the surface to B at the
bottom for several lateral offsets (a refraction survey). Written as a program, the terrain picks
the speed at a point with soft comparisons of its depth against the boundaries, so the crossing
time has a gradient with respect to the boundaries, and a least-squares fit can move them until
the predicted times match the measured ones.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import terrain
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm.auto import tqdm

import softflow as sf

# %%
# The terrain as a program
# ------------------------
# The exact program reads "if depth < b_1: layer 0, elif depth < b_2: layer 1, ...". Its soft
# version compares the depth with every boundary at once: ``deeper[k]`` is the soft truth of
# "depth > b_k", a point is in layer k if it is below boundary k - 1 and not below boundary k, and
# ``sf.soft_select`` blends the layers' slownesses (1 / speed) by those soft one-hot weights. In
# hard mode this is the exact layered terrain; in soft mode every boundary gets a gradient.


def layered_slowness(points, boundaries, speeds, relaxation):
    """Slowness at points (lateral, depth) of layers with the given boundaries and speeds."""
    depth = points[..., 1]
    deeper = relaxation.greater(depth[..., None], boundaries)
    below_previous = jnp.concatenate([jnp.ones_like(deeper[..., :1]), deeper], axis=-1)
    below_next = jnp.concatenate([deeper, jnp.zeros_like(deeper[..., :1])], axis=-1)
    return sf.soft_select(below_previous - below_next, 1 / speeds)


# %%
# The program at a few softnesses: the softness is a length (here, in units of the depth), the
# width over which a boundary blends its two layers.

speeds = np.array([1.2, 0.5, 1.9])
depth = 2.0
truth = np.array([0.7, 1.1])

with jax.enable_x64(True):
    column = jnp.stack([jnp.zeros(2000), jnp.linspace(0.0, depth, 2000)], axis=-1)
    fig_program, ax = plt.subplots(figsize=(6, 3.2))
    for softness in (0.1, 0.02):
        relaxation = sf.Relaxation(softness * depth)
        profile = layered_slowness(column, jnp.asarray(truth), jnp.asarray(speeds), relaxation)
        ax.plot(column[:, 1], profile, label=f"softness {softness} × depth")
    hard = sf.Relaxation(1.0, mode="hard")
    profile = layered_slowness(column, jnp.asarray(truth), jnp.asarray(speeds), hard)
    ax.plot(column[:, 1], profile, "k--", lw=1, label='mode="hard"')
ax.set(xlabel="depth", ylabel="slowness 1 / v", title="The layered program, soft and hard")
ax.legend(fontsize=8)
save_figure(fig_program, "terrain_survey_program")

# %%
# A synthetic survey
# ------------------
# The measured times are the exact fastest-crossing times of the true layers
# (:func:`terrain.survey_times`, found by L-BFGS on the crossing points, not by the soft
# program), once as they are and once with 1 % noise. Whether a survey can identify the
# boundaries at all shows in the singular values of the Jacobian of the times with respect to
# the boundaries (:func:`terrain.survey_jacobian`): here in relative time per depth. Its inverse
# also predicts how much 1 % of noise moves the boundaries.

offsets = np.linspace(0.0, 2.5 * depth, 10)
times = terrain.survey_times(offsets, truth, speeds, depth)
noisy = times * (1 + 0.01 * np.random.default_rng(1).standard_normal(times.size))
jacobian = terrain.survey_jacobian(offsets, truth, speeds, depth) * depth / times[:, None]
noise_spread = 0.01 * np.sqrt(np.diag(np.linalg.inv(jacobian.T @ jacobian)))
print(f"singular values of the relative time Jacobian: {np.linalg.svd(jacobian)[1].round(3)}")
print(f"expected spread of the boundaries under 1 % noise: {noise_spread.round(3)} × depth")

# %%
# The fit
# -------
# :func:`terrain.fit_boundaries` runs the program inside a Levenberg-Marquardt fit of the
# relative time residuals. For each offset it first finds the fastest route through the current
# soft terrain (Snell's law on a column of samples of the program), then holds the route fixed
# and differentiates the time through the program with respect to the boundaries: at the
# fastest route the time is stationary in the route, so that is the derivative of the fastest
# time (the envelope theorem). The softness is annealed from 10 % to 0.025 % of the depth,
# eight steps at each: a blurred boundary is felt from afar, a sharp one is where the truth is.

fit = terrain.fit_boundaries(layered_slowness, offsets, times, speeds, depth, progress=True)
noisy_fit = terrain.fit_boundaries(layered_slowness, offsets, noisy, speeds, depth, progress=True)
for name, result in (("noiseless", fit), ("1 % noise", noisy_fit)):
    errors = np.abs(result.boundaries - truth) / depth
    print(
        f"{name}: boundaries {result.boundaries.round(4)} (true {truth}), largest error "
        f"{errors.max():.2%} of the depth, relative time residual {result.relative_rms:.1e}"
    )
truth_misfit = np.sqrt(np.mean((times / noisy - 1) ** 2))
print(f"the true boundaries explain the noisy times to {truth_misfit:.1e}")

# %%
# The boundaries move to their true positions
# -------------------------------------------
# Each softness gets a few Levenberg-Marquardt steps; the jumps in the residual are the changes
# of softness, which change the model.

fig_fit, (ax_boundaries, ax_residual) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, result, style in (("noiseless", fit, "-"), ("1 % noise", noisy_fit, "--")):
    for k in range(truth.size):
        ax_boundaries.plot(
            result.history["boundaries"][:, k], style, color=f"C{k}", label=f"{name}, {k + 1}"
        )
    ax_residual.semilogy(result.history["relative_rms"], style, color="k", label=name)
for k, value in enumerate(truth):
    ax_boundaries.axhline(value, color=f"C{k}", lw=3, alpha=0.3)
ax_boundaries.set(xlabel="step", ylabel="boundary depth", title="Boundaries (true: bands)")
ax_boundaries.invert_yaxis()
ax_boundaries.legend(fontsize=7)
ax_residual.axhline(0.01, color="grey", lw=1, ls=":", label="noise level")
ax_residual.set(xlabel="step", ylabel="relative RMS of time residuals", title="Fit residual")
ax_residual.legend(fontsize=8)
save_figure(fig_fit, "terrain_survey_fit")

# %%
# Residuals per offset after the fit: the noiseless fit matches to the bias of the soft program
# at the last softness, the noisy one to the noise.

fig_residuals, ax = plt.subplots(figsize=(6, 3.2))
ax.plot(offsets, fit.predicted_times / times - 1, "o-", label="noiseless")
ax.plot(offsets, noisy_fit.predicted_times / noisy - 1, "s--", label="1 % noise")
ax.axhline(0, color="grey", lw=1)
ax.set(xlabel="lateral offset of B", ylabel="predicted / measured − 1")
ax.legend()
save_figure(fig_residuals, "terrain_survey_residuals")

# %%
# Random terrains
# ---------------
# The same fit on random three-layer terrains (speeds between 0.3 and 2, random thicknesses,
# ten offsets up to 2.5 depths), keeping those whose survey identifies the boundaries: smallest
# singular value of the relative Jacobian at least 0.005. ``tests/test_terrain.py`` runs the
# same check on two- to six-layer terrains, with a criterion fit for five or six layers (which
# hardly ever reach 0.005): a smaller singular value, but the shift of the boundaries that the
# bias of the soft program implies to first order at most 0.5 % of the depth.

rng = np.random.default_rng(5)
table = []
progress = tqdm(total=2 if quick() else 10, desc="random terrains", disable=None)
while len(table) < progress.total:
    layer_speeds = rng.uniform(0.3, 2.0, 3)
    thicknesses = rng.uniform(0.2, 1.0, 3)
    boundaries = np.cumsum(thicknesses / thicknesses.sum())[:-1] * depth
    survey = terrain.survey_times(offsets, boundaries, layer_speeds, depth)
    relative = terrain.survey_jacobian(offsets, boundaries, layer_speeds, depth) / survey[:, None]
    if np.linalg.svd(relative * depth)[1].min() < 0.005:
        continue
    noisy_survey = survey * (1 + 0.01 * rng.standard_normal(survey.size))
    row = []
    for data in (survey, noisy_survey):
        # Four starts suffice for three layers; the default 32 is sized for five or six.
        result = terrain.fit_boundaries(
            layered_slowness, offsets, data, layer_speeds, depth, starts=4
        )
        row.append(np.abs(result.boundaries - boundaries).max() / depth)
    table.append(row)
    progress.update()
progress.close()
table = np.array(table)
print(
    f"{len(table)} random terrains, largest boundary error / depth: noiseless median "
    f"{np.median(table[:, 0]):.2%}, max {table[:, 0].max():.2%}; 1 % noise median "
    f"{np.median(table[:, 1]):.1%}, max {table[:, 1].max():.1%}"
)

# %%
# The fit as an animation: the fastest routes through the current soft terrain, and its
# boundaries, at every step of the noiseless fit.


@jax.jit
def routes_at(boundaries, softness):
    relaxation = sf.Relaxation(softness * depth)

    def program(points):
        return layered_slowness(points, boundaries, jnp.asarray(speeds), relaxation)

    return terrain.fastest_layered_routes(program, jnp.asarray(offsets), depth, 512)


with jax.enable_x64(True):
    frames = np.arange(0, fit.history["softness"].size, 2)
    frame_routes = np.asarray(
        jax.vmap(routes_at)(
            jnp.asarray(fit.history["boundaries"][frames]),
            jnp.asarray(fit.history["softness"][frames]),
        )
    )

fig_anim, ax = plt.subplots(figsize=(6, 3.5))
ax.set(xlim=(-0.2, offsets.max() + 0.2), ylim=(depth, 0), xlabel="lateral", ylabel="depth")
for value in truth:
    ax.axhline(value, color="k", lw=4, alpha=0.15)
boundary_lines = [ax.axhline(0, color="C0") for _ in truth]
route_lines = [ax.plot([], [], color="crimson", lw=1)[0] for _ in offsets]
title = ax.set_title("")
fig_anim.tight_layout()


def show(index):
    step = frames[index]
    for line, value in zip(boundary_lines, fit.history["boundaries"][step], strict=True):
        line.set_ydata([value, value])
    for line, route in zip(route_lines, frame_routes[index], strict=True):
        line.set_data(route[:, 0], route[:, 1])
    title.set_text(
        f"step {step}, softness {fit.history['softness'][step]:.4f} × depth, "
        f"residual {fit.history['relative_rms'][step]:.0e}"
    )
    return [*boundary_lines, *route_lines, title]


animation = FuncAnimation(fig_anim, show, frames=frames.size)
animation.save(output_dir() / "terrain_survey_fit.gif", writer=PillowWriter(fps=5))
plt.close(fig_anim)
