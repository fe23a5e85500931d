"""Forward values and gradients of sf.greater(x, 0) in the three modes."""

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt

import softflow as sf

x = jnp.linspace(-2.0, 2.0, 401)
styles = {"soft": "-", "hard": "-", "straight_through": "--"}
fig, (ax_value, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.6))
for mode, style in styles.items():

    def truth(v, mode=mode):
        return sf.greater(v, 0.0, softness=0.4, mode=mode)

    ax_value.plot(x, truth(x), ls=style, lw=2, label=mode)
    ax_grad.plot(x, jax.vmap(jax.grad(truth))(x), ls=style, lw=2, label=mode)
ax_value.set(xlabel="x", ylabel="forward value", title="greater(x, 0, softness=0.4)")
ax_grad.set(xlabel="x", ylabel="d/dx", title="gradient")
for ax in (ax_value, ax_grad):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.tight_layout()
