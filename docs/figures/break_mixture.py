"""A Python ``for`` loop with a soft ``break`` under ``sf.relax``: a mixture over the exit step.

The mixture weights are recomputed step by step with jnp and checked against the relaxed
program, and a naive conversion that blends a "has broken" flag into the state is shown beside.
"""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from accumulate_program import accumulate  # beside this script (see that module)

import softflow as sf

values = np.array([0.8, 0.5, 1.1, 0.3, 0.9, 0.6, 1.0, 0.4], dtype=np.float32)
decay, n_steps = 0.9, len(values)


@jax.jit
def relaxed(threshold, softness):
    return sf.relax(accumulate, softness=softness)(values, threshold)


def mixture(threshold, softness):
    """States at each break s_k, s_end, p_k, the weights p_k prod_{j<k}(1 - p_j), prod_j (1 - p_j)
    and the mixture, computed world by world with jnp from sf.greater."""
    state, alive = jnp.zeros_like(threshold), 1.0
    stopped, break_probs, weights = [], [], []
    for k in range(n_steps):
        state = state + values[k]
        p = sf.greater(state, threshold, softness=softness)
        stopped.append(state)
        break_probs.append(p)
        weights.append(alive * p)
        alive = alive * (1 - p)
        state = decay * state
    stopped, weights = jnp.stack(stopped), jnp.stack(weights)
    result = jnp.sum(weights * stopped, axis=0) + alive * state
    return stopped, state, jnp.stack(break_probs), weights, alive, result


def naive(threshold, softness):
    """Blend a "has broken" flag into the state: later steps run on a stopped/running blend."""
    total, broken = jnp.zeros_like(threshold), jnp.zeros_like(threshold)
    for k in range(n_steps):
        total = sf.soft_where(broken, total, total + values[k])
        p = sf.greater(total, threshold, softness=softness)
        total = sf.soft_where(broken, total, sf.soft_where(p, total, decay * total))
        broken = broken + (1 - broken) * p
    return total


# (1) one threshold: the running world and its exits.
threshold, softness = 2.0, 0.2
stopped, end_state, break_probs, weights, end_weight, result = mixture(
    jnp.asarray(threshold), softness
)
assert np.allclose(relaxed(threshold, softness), result, rtol=1e-6, atol=1e-6)
assert np.isclose(float(jnp.sum(weights) + end_weight), 1.0, atol=1e-6)

steps = np.arange(1, n_steps + 1)
running = [0.0]
for k in range(n_steps):
    running.append(decay * (running[-1] + values[k]))

fig, axes = plt.subplot_mosaic(
    [["states", "weights", "output"], ["states", "weights", "bias"]],
    figsize=(14, 4.6),
    height_ratios=(2, 1),
)
ax_states, ax_weights = axes["states"], axes["weights"]
path_x = np.concatenate([[0], np.repeat(steps, 2)])
path_y = np.concatenate([[0.0], np.ravel(np.column_stack([stopped, running[1:]]))])
ax_states.plot(path_x, path_y, color="0.5", lw=1, label="running world (never blended)")
ax_states.scatter(
    steps,
    stopped,
    s=15 + 400 * np.asarray(weights),
    color="tab:orange",
    zorder=3,
    label="state at the break $s_k$ (area ∝ weight)",
)
ax_states.scatter(
    [n_steps + 1],
    [end_state],
    s=15 + 400 * float(end_weight),
    color="tab:green",
    zorder=3,
    label="$s_\\text{end}$ (no break)",
)
ax_states.axhline(threshold, color="k", lw=0.8, ls=":", label=f"threshold {threshold}")
ax_states.axhline(
    result, color="tab:red", lw=1.2, label=f"relax: Σ weight · $s_k$ = {float(result):.3f}"
)
ax_states.set(
    xlabel="iteration k",
    ylabel="total",
    title=f"the loop at threshold {threshold}, softness {softness}",
    xticks=range(n_steps + 2),
    xticklabels=[*map(str, range(n_steps + 1)), "end"],
)

width = 0.4
ax_weights.bar(steps - width / 2, break_probs, width, color="0.7", label="break probability $p_k$")
ax_weights.bar(
    steps + width / 2,
    weights,
    width,
    color="tab:orange",
    label="exit weight $p_k \\Pi_{j<k}(1 - p_j)$",
)
ax_weights.bar(
    [n_steps + 1], [end_weight], width, color="tab:green", label="no break $\\Pi_j (1 - p_j)$"
)
ax_weights.set(
    xlabel="iteration k",
    ylim=(0, 1.3),
    title=f"where the loop stops (softness {softness})",
    xticks=range(1, n_steps + 2),
    xticklabels=[*map(str, range(1, n_steps + 1)), "end"],
)

# (2) the output as a function of the threshold.
ax_output, ax_bias = axes["output"], axes["bias"]
thresholds = jnp.linspace(0.0, 4.5, 451)
exact = [accumulate(values.tolist(), float(t)) for t in thresholds]
ax_output.plot(thresholds, exact, color="k", lw=2, label="exact program")
for softness, color in zip((0.05, 0.2, 0.5), ("tab:blue", "tab:orange", "tab:purple"), strict=True):
    soft = jax.vmap(relaxed, in_axes=(0, None))(thresholds, softness)
    assert np.allclose(soft, mixture(thresholds, softness)[-1], rtol=1e-5, atol=1e-5)
    blended_flag = naive(thresholds, softness)
    if softness == 0.2:  # the naive conversion is visibly biased, not a rounding difference
        assert np.max(np.abs(blended_flag - soft)) > 0.05
    ax_output.plot(thresholds, soft, color=color, label=f"relax, softness {softness}")
    ax_output.plot(thresholds, blended_flag, color=color, ls="--", lw=1)
    ax_bias.plot(thresholds, blended_flag - soft, color=color, ls="--", lw=1)
ax_output.plot([], [], color="0.4", ls="--", lw=1, label="blended break flag")
ax_output.set(ylabel="returned total", title="result vs threshold")
ax_output.tick_params(labelbottom=False)
ax_bias.sharex(ax_output)
ax_bias.axhline(0.0, color="0.6", lw=0.8)
ax_bias.set(xlabel="threshold", ylabel="blended flag − relax")
for ax in axes.values():
    ax.grid(alpha=0.3)
for ax in (ax_states, ax_weights, ax_output):
    ax.legend(fontsize=7, loc="upper left")
for handle in ax_states.get_legend().legend_handles:
    if hasattr(handle, "set_sizes"):
        handle.set_sizes([30])
fig.tight_layout()
