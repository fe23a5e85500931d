"""Every kind of soft step at several softness values: sf.greater(x, 0) against the hard step."""

import jax.numpy as jnp
import matplotlib.pyplot as plt

import softflow as sf

x = jnp.linspace(-3.0, 3.0, 601)
softness_values = (1.0, 0.5, 0.2, 0.05)
colors = plt.cm.viridis(jnp.linspace(0.1, 0.85, len(softness_values)))

fig, axes = plt.subplots(2, 4, figsize=(11, 5.2), sharex=True, sharey=True)
for ax, kind in zip(axes.flat, sf.KINDS, strict=False):
    ax.plot(x, sf.greater(x, 0.0, mode="hard"), color="0.6", lw=1, ls="--", label="hard")
    for softness, color in zip(softness_values, colors, strict=True):
        ax.plot(
            x,
            sf.greater(x, 0.0, softness=softness, kind=kind),
            color=color,
            label=f"τ = {softness}",
        )
    ax.set_title(kind)
    ax.grid(alpha=0.3)

# The last panel overlays the kinds at one softness: same slope at 0, different tails.
overlay = axes.flat[-1]
for kind in sf.KINDS:
    overlay.plot(x, sf.greater(x, 0.0, softness=0.5, kind=kind), lw=1.2, label=kind)
overlay.set_title("all kinds, τ = 0.5")
overlay.legend(fontsize=7, loc="lower right")
axes[0, 0].legend(fontsize=7, loc="upper left")
for ax in axes[1]:
    ax.set_xlabel("x")
for ax in axes[:, 0]:
    ax.set_ylabel("greater(x, 0)")
fig.tight_layout()
