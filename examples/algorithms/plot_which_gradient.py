"""
Which gradient to trust
=======================

A program that branches has a gradient of zero almost everywhere: moving a threshold a little
changes nothing until the branch flips, and then the output jumps. softflow offers two ways
around that.

* **Relax the program** (:func:`softflow.relax`): every condition becomes a soft truth value and
  every branch a blend. The gradient is exact and deterministic, but it is the gradient of a
  *different* program, one that visits blends of states the exact program never visits. The
  straight-through variant runs the exact program and borrows the relaxed gradient.
* **Smooth the program** (:func:`softflow.smooth`): run the *exact* program at random
  perturbations of its inputs and average,
  :math:`F(x) = \\mathbb{E}\\, f(x + \\sigma\\varepsilon)`. Its gradient is estimated from the
  samples without differentiating the program: unbiased, but noisy, and the noise grows with the
  number of inputs.

Which gradient should you follow? :func:`softflow.gradient_check` measures them on your program.
This page runs it on three programs of the gallery (the bouncing ball, the decision tree, the
shortest paths) and on one that ``sf.relax`` refuses, then spends the same budget of program
evaluations on an optimisation with each estimator.
"""

# %%
# Setup
# -----
import functools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from bouncing_ball import MAX_STEPS, RESTITUTION, simulate, step
from decision_tree import LEAVES, NODES, split, tree
from jax import lax
from matplotlib.animation import FuncAnimation, PillowWriter
from shortest_paths import H, W, shortest_path
from sklearn.datasets import load_breast_cancer
from tqdm import tqdm

import softflow as sf

QUICK = quick()
KEY = jax.random.key(0)


# %%
# Four programs, four losses
# --------------------------
# Each loss is written once, as a function ``loss(params, data)`` of the numbers we optimise and
# of data that stay fixed, from a *routing* function: the exact program for the exact loss, its
# relaxed version for the relaxed loss.
#
# **The bouncing ball** (:doc:`plot_bouncing_ball`): the squared distance from where the ball
# stops to a target 13 m away, as a function of the launch speed (m/s) and angle (degrees),
# searched in the box of its page (4 to 10 m/s, 20 to 70 degrees). Where one more bounce fits
# in, the loss jumps. The exact program is the relaxed one in ``mode="hard"``.
def ball_loss_of(flight):
    def loss(launch, target):
        return flight(launch[0], jnp.deg2rad(launch[1]), target)[2]

    return loss


ball = {
    "exact": ball_loss_of(sf.relax(simulate, mode="hard")),
    "relaxed": ball_loss_of(sf.relax(simulate, softness=0.03, max_steps=MAX_STEPS)),
    "straight-through": ball_loss_of(
        sf.relax(simulate, softness=0.03, max_steps=MAX_STEPS, mode="straight_through")
    ),
    "data": jnp.float32(13.0),
    "start": jnp.array([5.0, 30.0]),
    "scale": jnp.array([0.3, 3.0]),
    "box": (jnp.array([4.0, 20.0]), jnp.array([10.0, 70.0])),
}


# %%
# **The decision tree** (:doc:`../learning/plot_decision_tree`): its seven thresholds, on the
# breast cancer data. The features the nodes test are fixed here (node ``k`` tests the feature
# ranked ``k`` by its correlation with the label), and each leaf predicts the class frequencies
# of the training samples that reach it, so that the loss, the cross-entropy on the training
# data, is the entropy that CART lowers split by split, here for all seven thresholds at once. It
# is piecewise constant in the thresholds. The tree is relaxed sample by sample, as on its page.
def tree_loss_of(routing):
    def loss(thresholds, data):
        x, labels, features = data
        params = {"features": features, "thresholds": thresholds, "leaves": jnp.eye(LEAVES)}
        reach = jax.vmap(routing, in_axes=(0, None))(x, params)  # sample -> leaf (weights)
        counts = reach.T @ labels  # (expected) count of each class at each leaf
        frequencies = (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + 2.0)
        return -jnp.sum(counts * jnp.log(frequencies)) / len(x)

    return loss


(x_train, y_train), _, _ = split(load_breast_cancer(), seed=0)
correlation = np.abs([np.corrcoef(x_train[:, f], y_train)[0, 1] for f in range(x_train.shape[1])])
node_features = np.eye(x_train.shape[1], dtype=np.float32)[np.argsort(-correlation)[:NODES]]
decision_tree = {
    "exact": tree_loss_of(sf.relax(tree, mode="hard")),
    "relaxed": tree_loss_of(sf.relax(tree, softness=0.1)),
    "straight-through": tree_loss_of(sf.relax(tree, softness=0.1, mode="straight_through")),
    "data": (jnp.asarray(x_train), jax.nn.one_hot(y_train, 2), jnp.asarray(node_features)),
    "start": jnp.zeros(NODES),
    "scale": 0.1,
}


# %%
# **The shortest paths** (:doc:`plot_shortest_paths`): the cost of every cell of the 8 x 8 map
# (64 numbers, as logarithms), learned from observed routes: the loss is the squared difference
# between the cells the exact routes visit under these costs and the observed visits. As on its
# page, the program is relaxed route by route.
def paths_loss_of(route):
    def loss(log_costs, data):
        pairs, observed = data
        costs = jnp.exp(log_costs) / jnp.mean(jnp.exp(log_costs))
        visits, _ = jax.vmap(route, in_axes=(None, 0, 0))(costs, pairs[:, 0], pairs[:, 1])
        return jnp.mean(jnp.sum((visits - observed) ** 2, axis=(1, 2)))

    return loss


hidden = 1.0 + 2.0 * (jax.random.uniform(jax.random.key(3), (H, W)) > 0.7)
pairs = jax.random.choice(jax.random.key(4), H * W, (12, 2), replace=False)
observed, _ = jax.vmap(shortest_path, in_axes=(None, 0, 0))(hidden, pairs[:, 0], pairs[:, 1])
shortest_paths = {
    "exact": paths_loss_of(shortest_path),
    "relaxed": paths_loss_of(sf.relax(shortest_path, softness=0.3)),
    "straight-through": paths_loss_of(
        sf.relax(shortest_path, softness=0.3, mode="straight_through")
    ),
    "data": (pairs, observed),
    "start": jnp.zeros((H, W)),
    "scale": 0.3,
}


# %%
# **The ball on rough ground**, a program ``relax`` refuses. The ground is a row of tiles 1 m
# long, each with its own bounciness; the program looks a tile's bounciness up in a hash of the
# tile's coordinate (the bits of the float, mixed as a hash table would), a common way of drawing
# a fixed pseudo-random texture without carrying a random key. A hash has no soft counterpart,
# and ``relax`` says so instead of returning a gradient that ignores it.
TILE = 1.0


def tile_bounciness(x):
    """The restitution of the tile under ``x``: 0.6 to 0.8, from a hash of the tile's index."""
    bits = lax.bitcast_convert_type(jnp.floor(x / TILE), jnp.uint32)
    mixed = (bits ^ (bits >> 16)) * jnp.uint32(0x45D9F3B)
    mixed = mixed ^ (mixed >> 16)
    return 0.6 + 0.2 * (mixed >> 8).astype(jnp.float32) / 2**24


def rough_step(x, y, vx, vy):
    x, y, vx, vy, bounce = step(x, y, vx, vy)
    vy = jnp.where(bounce, vy * tile_bounciness(x) / RESTITUTION, vy)
    return x, y, vx, vy, bounce


rough_simulate = functools.partial(simulate, step=rough_step)
rough_ground = {
    "exact": ball_loss_of(sf.relax(rough_simulate, mode="hard")),
    "data": jnp.float32(13.0),
    "start": ball["start"],
    "scale": ball["scale"],
    "box": ball["box"],
}
try:
    sf.relax(rough_simulate, softness=0.03, max_steps=MAX_STEPS)(5.0, 0.5, 13.0)
except Exception as refusal:
    assert "cannot relax `bitcast_convert_type`" in str(refusal), refusal
    print(f"{type(refusal).__name__}: {refusal}")

problems = {
    "bouncing ball": ball,
    "decision tree": decision_tree,
    "shortest paths": shortest_paths,
    "rough ground": rough_ground,
}

# %%
# Gradient quality against cost
# -----------------------------
# :func:`softflow.gradient_check` estimates, at one point, the gradient of the smoothed objective
# from many samples (the reference), and measures every estimator against it: the cosine of the
# angle between each estimate and the reference (1: the same direction), the spread of the
# estimates (variance, relative to the reference's squared length), and the cost, both in
# evaluations of the exact program and in measured time against one exact run. The smoothing
# scale is the size of a perturbation in each input's units; the softness of the relaxed program
# is in the units of what its conditions compare. The point is where the optimisations below
# start. The exact losses and the relaxed gradients are jitted here and given to the check, so
# that the optimisations reuse them without compiling them again.
SAMPLES = (8, 64) if QUICK else (8, 64, 512)
checks = {}
for index, (name, problem) in enumerate(tqdm(problems.items(), desc="checks", disable=None)):
    problem["exact"] = jax.jit(problem["exact"])
    gradients = {}
    for kind in ("relaxed", "straight-through"):
        if kind in problem:
            problem[f"{kind} gradient"] = jax.jit(jax.grad(problem[kind]))
            gradients[f"{kind} (sf.relax)"] = problem[f"{kind} gradient"]
    checks[name] = sf.gradient_check(
        problem["exact"],
        problem["start"],
        problem["data"],
        key=jax.random.fold_in(KEY, index),
        scale=problem["scale"],
        samples=SAMPLES,
        reference_samples=2048 if QUICK else 32768,
        repeats=8 if QUICK else 32,
        gradients=gradients,
        timing_calls=21 if QUICK else 41,
    )
    print(f"\n{name}\n{checks[name]}")

# %%
# The same checks as a picture: the cosine with the reference against the cost of one
# gradient in program evaluations, the unit of the budget below. A smoothed gradient from ``N``
# samples costs ``N`` evaluations; a relaxed or straight-through gradient costs its measured time
# in exact runs of the program. The smoothed estimator is a line through its sample counts (with
# the spread of the cosine over repeated draws), the relaxed and straight-through gradients are
# single points. (In time, a vectorised call of ``N`` samples of a program as short as the ball's
# costs much less than ``N`` runs: the table's cost column times calls of 8 samples.)
COLOURS = {
    "relaxed": "tab:orange",
    "straight-through": "tab:green",
    "smoothed, N=8": "tab:blue",
    "smoothed, N=64": "tab:purple",
}
styles = {"relaxed (sf.relax)": "o", "straight-through (sf.relax)": "s"}
fig, axes = plt.subplots(1, len(checks), figsize=(14, 3.6), sharey=True)
for ax, (name, check) in zip(axes, checks.items(), strict=True):
    smoothed = [r for r in check.rows if r.name.startswith("antithetic")]
    cosines = np.array([r.cosine for r in smoothed])
    spread = np.array([r.cosine_std for r in smoothed])
    ax.errorbar(
        [r.evaluations for r in smoothed],
        cosines,
        yerr=[spread, np.minimum(spread, 1.0 - cosines)],  # a cosine is at most 1
        marker="^",
        color=COLOURS["smoothed, N=8"],
        label="smoothed (antithetic)",
    )
    for r in smoothed:
        ax.annotate(
            f"N={r.evaluations}",
            (r.evaluations, r.cosine),
            textcoords="offset points",
            xytext=(4, -12),
            fontsize=8,
        )
    for r in check.rows:
        if r.name in styles and r.failure is None:
            colour = COLOURS[r.name.removesuffix(" (sf.relax)")]
            ax.plot(r.cost, r.cosine, styles[r.name], color=colour, markersize=8, label=r.name)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(plt.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plt.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(plt.NullFormatter())
    ax.set_title(name)
    ax.set_xlabel("cost of one gradient (evaluations)")
    ax.axhline(1.0, color="gray", linewidth=0.5)
axes[0].set_ylabel("cosine with the reference")
axes[0].legend(fontsize=8, loc="lower right")
fig.tight_layout()
save_figure(fig, "which_gradient_quality")

# %%
# The same budget, four optimisations
# -----------------------------------
# Now spend a fixed budget of program evaluations on Adam (steps of half a smoothing scale in
# each input, the same for every estimator; the launches kept in their box) from the point
# above. A smoothed gradient from
# ``N`` samples costs ``N`` evaluations; a relaxed or straight-through gradient costs what it
# measured above, in exact runs of the program. Averaging ``k`` smoothed gradients from ``N``
# samples is a gradient from ``kN`` samples, so one compiled smoothed gradient serves every
# sample count. After every step the exact program is run at the new point (not counted in the
# budget): that loss is what we plot. The smoothed gradient is the one the check compiled.
BUDGET = 1024 if QUICK else 4096
BLOCK = SAMPLES[0]
CHOICES = {"smoothed, N=8": 1, "smoothed, N=64": 8}  # name -> blocks of BLOCK samples per step


def adam(scale):
    """Adam with steps of half a smoothing scale in each input."""
    return optax.chain(optax.scale_by_adam(), optax.scale(-0.5 * scale))


@jax.jit
def adam_step(params, state, gradient, scale, low, high):
    updates, state = adam(scale).update(gradient, state)
    return jnp.clip(optax.apply_updates(params, updates), low, high), state


def descend(problem, gradient, cost, key):
    """Adam until the budget is spent; the evaluations spent and exact loss after each step."""
    params, scale = problem["start"], jnp.broadcast_to(problem["scale"], problem["start"].shape)
    state = adam(scale).init(params)
    low, high = problem.get("box", (-jnp.inf, jnp.inf))
    spent, losses, path = [0.0], [float(problem["exact"](params, problem["data"]))], [params]
    while spent[-1] + cost <= BUDGET:
        step_key = jax.random.fold_in(key, len(spent))
        params, state = adam_step(params, state, gradient(params, step_key), scale, low, high)
        spent.append(spent[-1] + cost)
        losses.append(float(problem["exact"](params, problem["data"])))
        path.append(params)
    return np.array(spent), np.array(losses), np.array(path)


def estimators_for(name, problem):
    """name -> (gradient(params, key), cost in program evaluations) for one problem."""
    data = problem["data"]
    estimators = {}
    for kind in ("relaxed", "straight-through"):
        if f"{kind} gradient" in problem:
            exact_gradient = problem[f"{kind} gradient"]
            estimators[kind] = (
                lambda params, key, g=exact_gradient: g(params, data),
                checks[name].row(kind).cost,
            )
    block = checks[name].smoothed["antithetic"]  # compiled by the check, from BLOCK samples
    for label, blocks in CHOICES.items():

        def averaged(params, key, blocks=blocks):
            keys = (jax.random.fold_in(key, i) for i in range(blocks))
            return np.mean([block(params, data, key=k) for k in keys], axis=0)

        estimators[label] = (averaged, BLOCK * blocks)
    return estimators


runs = {}
for index, (name, problem) in enumerate(tqdm(problems.items(), desc="descents", disable=None)):
    runs[name] = {
        label: descend(problem, gradient, cost, jax.random.fold_in(KEY, 100 + index))
        for label, (gradient, cost) in estimators_for(name, problem).items()
    }

print(f"exact loss after {BUDGET} program evaluations (start: its value at the start)")
labels = ["relaxed", "straight-through", *CHOICES]
print(f"{'':16}{'start':>9}" + "".join(f"{label:>18}" for label in labels))
for name, run in runs.items():
    start = next(iter(run.values()))[1][0]
    cells = "".join(
        f"{run[label][1][-1]:>18.4g}" if label in run else f"{'refused':>18}" for label in labels
    )
    print(f"{name:16}{start:9.4g}{cells}")

fig, axes = plt.subplots(1, len(runs), figsize=(14, 3.6))
for ax, (name, run) in zip(axes, runs.items(), strict=True):
    for label, (spent, losses, _) in run.items():
        ax.plot(spent, losses, color=COLOURS[label], label=label)
    ax.set_title(name)
    ax.set_xlabel("program evaluations spent")
axes[0].set_ylabel("exact loss")
axes[0].legend(fontsize=8)
fig.tight_layout()
save_figure(fig, "which_gradient_descent")

# %%
# The two ball problems as the exact program sees them: the exact loss over launches (computed
# point by point with the jitted exact program), and where each descent is after the same share
# of the budget (saved as a GIF). The cliffs are where one more bounce fits in; on rough ground
# each tile's bounciness moves them.
SPEEDS, ANGLES = (np.linspace(*bounds, 41) for bounds in np.transpose(ball["box"]))
fig_anim, axes_anim = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
markers = {}
for ax, name in zip(axes_anim, ("bouncing ball", "rough ground"), strict=True):
    problem = problems[name]
    landscape = [
        [float(problem["exact"](np.array([v, a], np.float32), problem["data"])) for v in SPEEDS]
        for a in ANGLES
    ]
    ax.imshow(
        np.sqrt(landscape),
        origin="lower",
        extent=(SPEEDS[0], SPEEDS[-1], ANGLES[0], ANGLES[-1]),
        aspect="auto",
        cmap="viridis_r",
        vmax=10.0,
        interpolation="nearest",
    )
    ax.plot(*np.asarray(problem["start"]), "o", color="white")
    for label in runs[name]:
        markers[name, label] = ax.plot([], [], ".-", color=COLOURS[label], label=label)[0]
    ax.set_title(f"{name}: distance to the target (light: close)", fontsize=10)
    ax.set_xlabel("launch speed (m/s)")
axes_anim[0].set_ylabel("launch angle (degrees)")
axes_anim[0].legend(fontsize=7, loc="upper right")
fig_anim.tight_layout(rect=(0, 0, 1, 0.92))
FRAMES = 15


def draw(frame):
    share = BUDGET * (frame + 1) / FRAMES
    for (name, label), line in markers.items():
        spent, _, path = runs[name][label]
        shown = path[spent <= share]
        line.set_data(shown[:, 0], shown[:, 1])
    fig_anim.suptitle(f"{share:.0f} program evaluations spent")
    return list(markers.values())


animation = FuncAnimation(fig_anim, draw, frames=FRAMES, blit=False)
animation.save(output_dir() / "which_gradient.gif", writer=PillowWriter(fps=3), dpi=60)
draw(FRAMES - 1)
save_figure(fig_anim, "which_gradient_paths")

# %%
# Where each one wins
# -------------------
# One descent per gradient, with one random key each, is an anecdote: read the table of final
# losses as such (with four times the budget, the page's full run, every descent reaches the
# target on the ball and an exact fit of the routes, and the ranking on the tree changes). The
# gradient checks are the steadier evidence, and the claims below are checked against this
# run's numbers (the page stops if one fails).
#
# * **A program relax refuses**: on rough ground the smoothed gradient is the only one there is
#   (``relax`` refuses the hash, and JAX cannot reverse-differentiate the exact ``while`` loop),
#   and it is a good one, because the smoothed estimators only *run* the program; the descent
#   with it lowers the exact loss more than tenfold.
# * **Few parameters**: with two launch parameters, 64 smoothed samples point where the
#   reference points (cosine above 0.98), and 8 samples, one vectorised call, cost less time
#   than one relaxed gradient. The relaxed gradient points the same way, but it is the gradient
#   of another program; the straight-through one follows the exact path with soft derivatives,
#   and nothing guarantees that its steps lower the exact loss.
# * **Many parameters**: the variance of a smoothed gradient grows with the number of inputs
#   (the variance column: 2 inputs for the ball, 7 thresholds, 64 costs), so at the cost of a
#   relaxed gradient a smoothed one is mostly noise on the tree and the shortest paths, where the
#   relaxed gradient points better; smoothing catches up only with hundreds of samples per step.
#   Relaxation is the better buy when the program relaxes well.
# * Neither is "the" gradient: the relaxed one belongs to the relaxed program, the smoothed one to
#   the program averaged over the scale :math:`\sigma`. Both change with their setting (softness,
#   scale); :func:`softflow.gradient_check` on your own program, at your own point, tells which to
#   follow.
quality = {name: {r.name: r for r in check.rows} for name, check in checks.items()}
final = {name: {label: run[label][1][-1] for label in run} for name, run in runs.items()}
start_loss = {name: next(iter(run.values()))[1][0] for name, run in runs.items()}
assert "relaxed" not in runs["rough ground"], "relax should refuse the rough ground"
assert final["rough ground"]["smoothed, N=8"] < 0.1 * start_loss["rough ground"]
for name in ("bouncing ball", "rough ground"):
    assert quality[name][f"antithetic, N={SAMPLES[1]}"].cosine > 0.98, name
for name in ("decision tree", "shortest paths"):
    relaxed = quality[name]["relaxed (sf.relax)"]
    assert relaxed.cosine > quality[name][f"antithetic, N={SAMPLES[0]}"].cosine, name
ball_quality = quality["bouncing ball"]
assert ball_quality["antithetic, N=8"].cost < ball_quality["relaxed (sf.relax)"].cost
variances = [quality[name]["antithetic, N=8"].variance for name in problems]
assert variances[0] < variances[1] < variances[2], variances  # 2, 7 and 64 inputs
for name in ("decision tree", "shortest paths"):
    assert quality[name]["antithetic, N=8"].cosine < 0.8, name
for name, losses in final.items():
    best = min(losses, key=losses.get)
    print(f"{name}: lowest exact loss after {BUDGET} evaluations with {best} ({losses[best]:.3g})")
plt.show()
