"""Why an `if` has no useful gradient, and how blending both branches gives one."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import softflow as sf


def valley(theta):
    return 0.5 * (theta - 2.0) ** 2


def plateau(theta):
    return 2.0 + 0.0 * theta


def hard_program(theta):
    return jnp.where(theta > 1.0, valley(theta), plateau(theta))


def soft_program(theta, softness):
    return sf.soft_if(sf.greater(theta, 1.0, softness=softness), valley, plateau, theta)


theta = jnp.linspace(-1.0, 3.5, 451)
softness_values = (0.5, 0.2)
fig, (ax_value, ax_slope) = plt.subplots(1, 2, figsize=(10, 3.8))
ax_value.plot(theta, hard_program(theta), color="k", lw=2, label="program with if")
ax_slope.plot(
    theta, jax.vmap(jax.grad(hard_program))(theta), color="k", lw=2, label="program with if"
)
for softness in softness_values:
    ax_value.plot(theta, soft_program(theta, softness), label=f"soft_if, softness {softness}")
    slope = jax.vmap(jax.grad(soft_program), in_axes=(0, None))(theta, softness)
    ax_slope.plot(theta, slope, label=f"soft_if, softness {softness}")
ax_value.set(xlabel="θ", ylabel="result", title="value: both branches blended near θ = 1")
ax_slope.set(xlabel="θ", ylabel="slope", title="slope: zero on the plateau unless blended")
ax_slope.axhline(0.0, color="0.6", lw=0.8)
for ax in (ax_value, ax_slope):
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
