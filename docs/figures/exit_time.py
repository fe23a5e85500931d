"""Exit-time distribution a_t (1 - c_t) of a soft while loop, computed step by step with jnp.

The loop is ``while r > 1: r = 0.7 r`` started at r = 5: the hard loop stops at step 5.
"""

import jax.numpy as jnp
import matplotlib.pyplot as plt

import softflow as sf

start, factor, bound, max_steps = 5.0, 0.7, 1.0, 12
hard_exit_step = 5  # 5 * 0.7**4 = 1.2 > 1 and 5 * 0.7**5 = 0.84 < 1


def exit_distribution(softness):
    """The weights a_t (1 - c_t) for t < T and the leftover mass a_T, as one array."""
    state, alive, weights = jnp.asarray(start), 1.0, []
    for _ in range(max_steps):
        keep_going = sf.greater(state, bound, softness=softness)
        weights.append(alive * (1 - keep_going))
        alive = alive * keep_going
        state = factor * state
    weights.append(alive)
    return jnp.stack(weights)


steps = jnp.arange(max_steps + 1)
softness_values = (0.02, 0.1, 0.3)
fig, axes = plt.subplots(1, len(softness_values), figsize=(11, 3.2), sharey=True)
for ax, softness in zip(axes, softness_values, strict=True):
    weights = exit_distribution(softness)
    ax.bar(steps, weights, color="tab:blue")
    ax.axvline(hard_exit_step, color="k", lw=0.8, ls=":", label="hard loop exits")
    ax.set(title=f"softness {softness}", xlabel="exit step t")
    ax.grid(alpha=0.3, axis="y")
axes[0].set_ylabel("$a_t (1 - c_t)$")
axes[0].legend(fontsize=8)
fig.tight_layout()
