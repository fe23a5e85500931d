"""Fitting a threshold with fixed and annealed softness (optax schedule): vanishing gradients."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import optax

import softflow as sf

true_threshold, start, steps = 0.7, 3.0, 300
inputs = jnp.linspace(-2.0, 2.0, 81)
labels = (inputs > true_threshold).astype(jnp.float32)


def loss(threshold, softness):
    prediction = sf.greater(inputs, threshold, softness=softness)
    return jnp.mean((prediction - labels) ** 2)


def fit(schedule):
    optimizer = optax.adam(0.05)

    def step(carry, index):
        threshold, state = carry
        grad = jax.grad(loss)(threshold, schedule(index))
        updates, state = optimizer.update(grad, state)
        threshold = optax.apply_updates(threshold, updates)
        return (threshold, state), threshold

    threshold = jnp.asarray(start)
    _, path = jax.lax.scan(step, (threshold, optimizer.init(threshold)), jnp.arange(steps))
    return path


schedules = {
    "fixed 0.01": optax.constant_schedule(0.01),
    "fixed 1.0": optax.constant_schedule(1.0),
    "annealed 1.0 → 0.01": optax.exponential_decay(
        1.0, transition_steps=steps, decay_rate=0.01, end_value=0.01
    ),
}
fig, (ax_schedule, ax_path) = plt.subplots(1, 2, figsize=(10, 3.6))
for name, schedule in schedules.items():
    ax_schedule.plot(schedule(jnp.arange(steps)), label=name)
    ax_path.plot(fit(schedule), label=name)
ax_schedule.set(yscale="log", xlabel="step", ylabel="softness", title="softness schedules")
ax_path.axhline(true_threshold, color="k", lw=0.8, ls=":", label="true threshold")
ax_path.set(xlabel="step", ylabel="threshold", title="threshold learned by Adam")
for ax in (ax_schedule, ax_path):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
