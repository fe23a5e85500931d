"""
Learning when a loop should stop
================================

A bisection search halves an interval until it is narrower than a tolerance ``eps``. How many
halvings it makes depends on ``eps`` through a ``while`` condition, a step function of ``eps``
whose derivative is zero almost everywhere. With :func:`softflow.soft_while` the loop becomes a
mixture over the step at which it stops, and its *expected* number of steps is a smooth function
of ``eps``: gradient descent can pick the tolerance that makes the search take a target number of
steps.

The state carries a one-hot "step counter" that the body shifts by one place at every step. The
soft loop returns the expected final state, so the counter comes back as the probability of
stopping after each number of steps: the exit-time distribution of cumulative halting.
"""

# %%
# The program: bisection for the root of f(x) = x^3 - 2 on [0, 2]
# ----------------------------------------------------------------
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter
from tqdm import tqdm

import softflow as sf

MAX_STEPS = 40
TARGET_STEPS = 12.0


def bisection(log_eps, softness):
    """Soft bisection; returns (root estimate, exit-time distribution, diagnostics)."""

    def keep_going(state):
        lo, hi, _ = state
        # "width > eps", compared in log space so that one softness fits every scale.
        return sf.greater(jnp.log(hi - lo), log_eps, softness=softness)

    def halve(state):
        lo, hi, counter = state
        mid = 0.5 * (lo + hi)
        right = sf.greater(mid**3 - 2.0, 0.0, mode="hard")  # the root is left of mid
        lo, hi = sf.soft_if(right, lambda: (lo, mid), lambda: (mid, hi))
        return lo, hi, jnp.roll(counter, 1)

    counter = jnp.zeros(MAX_STEPS + 1).at[0].set(1.0)
    (lo, hi, exit_time), info = sf.soft_while(
        keep_going, halve, (0.0, 2.0, counter), max_steps=MAX_STEPS, return_info=True
    )
    return 0.5 * (lo + hi), exit_time, info


def loss(log_eps, softness):
    _, _, info = bisection(log_eps, softness)
    return (info.expected_steps - TARGET_STEPS) ** 2


# %%
# Descend on log(eps)
# -------------------
# Start from a loose tolerance (about 4 steps) and let Adam, with a decaying step, move it.
# The softness is fixed here; annealing it would sharpen the distribution at the end.
softness = 0.4
log_eps = jnp.log(0.2)
iterations = 40 if quick() else 150
schedule = optax.exponential_decay(0.5, transition_steps=iterations, decay_rate=0.1)
optimiser = optax.adam(schedule)
opt_state = optimiser.init(log_eps)
value_and_grad = jax.jit(jax.value_and_grad(loss))
run = jax.jit(bisection)

history = {"log_eps": [], "expected": [], "exit_time": []}
for _ in tqdm(range(iterations), desc="learning eps", disable=None):
    _, exit_time, info = run(log_eps, softness)
    history["log_eps"].append(float(log_eps))
    history["expected"].append(float(info.expected_steps))
    history["exit_time"].append(exit_time)
    value, grad = value_and_grad(log_eps, softness)
    updates, opt_state = optimiser.update(grad, opt_state)
    log_eps = optax.apply_updates(log_eps, updates)

root, exit_time, info = run(log_eps, softness)
hard_steps = int(jnp.ceil(jnp.log2(2.0 / jnp.exp(log_eps))))
print(f"learned eps = {float(jnp.exp(log_eps)):.3g}")
print(f"expected steps = {float(info.expected_steps):.3f} (target {TARGET_STEPS})")
print(f"the hard loop with this eps runs {hard_steps} steps; root estimate {float(root):.6f}")
print(f"mass left at max_steps = {float(info.remaining_mass):.2e}")

# %%
# What changed
# ------------
# Left: the expected number of steps approaching the target. Right: the exit-time distribution
# (read off the one-hot counter) before and after learning.
fig, (ax_steps, ax_dist) = plt.subplots(1, 2, figsize=(10, 3.8))
ax_steps.plot(history["expected"], color="tab:blue")
ax_steps.axhline(TARGET_STEPS, color="black", linestyle="--", linewidth=1, label="target")
ax_steps.set_xlabel("iteration")
ax_steps.set_ylabel("expected number of steps")
ax_steps.legend()
steps = jnp.arange(MAX_STEPS + 1)
ax_dist.bar(steps, history["exit_time"][0], alpha=0.6, label=f"start, eps = {0.2:.2g}")
ax_dist.bar(steps, exit_time, alpha=0.6, label=f"learned, eps = {float(jnp.exp(log_eps)):.2g}")
ax_dist.set_xlim(-0.5, 25.5)
ax_dist.set_xlabel("steps before stopping")
ax_dist.set_ylabel("probability")
ax_dist.legend()
fig.tight_layout()
save_figure(fig, "learned_stopping")

# %%
# The exit-time distribution moving during the descent (saved as a GIF).
fig_anim, ax = plt.subplots(figsize=(5, 3.2))
bars = ax.bar(steps, history["exit_time"][0], color="tab:orange")
ax.set_xlim(-0.5, 25.5)
ax.set_ylim(0, 1)
ax.set_xlabel("steps before stopping")
ax.set_ylabel("probability")
title = ax.set_title("")


def draw(frame):
    for bar, height in zip(bars, history["exit_time"][frame], strict=True):
        bar.set_height(float(height))
    title.set_text(f"iteration {frame}: E[steps] = {history['expected'][frame]:.2f}")
    return [*bars, title]


animation = FuncAnimation(fig_anim, draw, frames=range(0, iterations, 2), blit=False)
animation.save(output_dir() / "learned_stopping.gif", writer=PillowWriter(fps=10))
plt.show()
