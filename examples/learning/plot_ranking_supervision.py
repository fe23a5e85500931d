"""
Learning to read numbers from their order alone
===============================================

Ranking supervision, the standard task of differentiable sorting: a small CNN looks at the image
of a four-digit number and outputs one score. It is never told what any number is. All it gets
is, for a set of ``n`` numbers, their true *order*; the loss compares the soft permutation matrix
of its scores,

.. math::
    P_{ji} = \\text{weight of number } i \\text{ at sorted position } j,

returned by ``sf.sort(scores, return_permutation=True)``, with the true permutation matrix. At
softness → 0 the relaxed sorting network is the exact odd-even transposition sort, whose
permutation has zero gradient almost everywhere; relaxed, every comparator passes a gradient to
both of its inputs, and sorting the scores right means reading the numbers right.

The numbers are made of scikit-learn's bundled 8×8 handwritten digits, four side by side; the
digits of the held-out sets are never seen in training. ``benchmarks/ranking.py`` runs the full
comparison (n = 3 to 9, several kinds, softjax's methods); this page is its short version.
"""

# %%
# Data: four-digit numbers from 8×8 digits
# ----------------------------------------
import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from _gallery import output_dir, quick, save_figure
from matplotlib.animation import FuncAnimation, PillowWriter
from sklearn.datasets import load_digits
from tqdm import tqdm

import softflow as sf

QUICK = quick()

N = 5  # numbers per set
DIGITS = 4
SETS_PER_STEP = 32
STEPS = 600 if QUICK else 3000
EVERY = 25 if QUICK else 100  # steps between evaluations (and GIF frames)
SOFTNESS = 0.1

digits = load_digits()
images = (digits.images / 16.0).astype(np.float32)
order = np.random.default_rng(0).permutation(len(images))
cut = int(0.7 * len(images))
pools = {
    "train": (jnp.asarray(images[order[:cut]]), jnp.asarray(digits.target[order[:cut]])),
    "test": (jnp.asarray(images[order[cut:]]), jnp.asarray(digits.target[order[cut:]])),
}


def numbers(key, pool, shape):
    """Random numbers: images (*shape, 8, 8 * DIGITS), digits side by side, and their values."""
    pool_images, pool_labels = pools[pool]
    index = jax.random.randint(key, (*shape, DIGITS), 0, pool_images.shape[0])
    picked = pool_images[index]
    image = jnp.concatenate([picked[..., k, :, :] for k in range(DIGITS)], axis=-1)
    value = jnp.sum(pool_labels[index] * 10 ** jnp.arange(DIGITS - 1, -1, -1), axis=-1)
    return image, value


example_images, example_values = numbers(jax.random.key(1), "test", (N,))
fig, axes = plt.subplots(1, N, figsize=(2.2 * N, 1.2))
for ax, image, value in zip(axes, example_images, example_values, strict=True):
    ax.imshow(image, cmap="gray_r")
    ax.set_title(f"{int(value):0{DIGITS}d}")
    ax.axis("off")
save_figure(fig, "ranking_numbers")

# %%
# The model and the loss through ``sf.sort``
# ------------------------------------------
# The scorer is a two-layer CNN. The loss sorts the n scores of each set with a relaxed
# odd-even network and asks for the permutation matrix P; binary cross-entropy on its entries
# against the true permutation (as in diffsort) is the whole training signal.


class Scorer(eqx.Module):
    layers: list

    def __init__(self, key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        self.layers = [
            eqx.nn.Conv2d(1, 8, 3, stride=2, padding=1, key=k1),
            eqx.nn.Conv2d(8, 16, 3, stride=2, padding=1, key=k2),
            eqx.nn.Linear(16 * 2 * 2 * DIGITS, 32, key=k3),
            eqx.nn.Linear(32, 1, key=k4),
        ]

    def __call__(self, image):
        conv1, conv2, hidden, out = self.layers
        h = jax.nn.relu(conv2(jax.nn.relu(conv1(image[None]))))
        return out(jax.nn.relu(hidden(h.reshape(-1))))[0]


def score(model, images):
    return jax.vmap(jax.vmap(model))(images)  # (sets, N)


def permutation(model, images):
    _, P = sf.sort(score(model, images), softness=SOFTNESS, return_permutation=True)
    return P  # P[s, j, i]: weight of number i at sorted position j of set s


def loss(model, images, values):
    P = jnp.clip(permutation(model, images), 1e-7, 1 - 1e-7)
    target = jax.nn.one_hot(jnp.argsort(values, axis=-1), N)  # the true permutation
    return -jnp.mean(target * jnp.log(P) + (1 - target) * jnp.log1p(-P))


def accuracy(model, images, values):
    """(exact match, element-wise): the whole ranking right, each position right."""
    placed = jnp.take_along_axis(values, jnp.argsort(score(model, images), axis=-1), axis=-1)
    correct = placed == jnp.sort(values, axis=-1)
    return jnp.mean(jnp.all(correct, axis=-1)), jnp.mean(correct)


# %%
# Training
# --------
# Adam on fresh sets every step; held-out accuracy and P of one fixed held-out set are recorded
# every few steps.
model = Scorer(jax.random.key(0))
optimiser = optax.adam(3e-3)
opt_state = optimiser.init(eqx.filter(model, eqx.is_array))
test_images, test_values = numbers(jax.random.key(2), "test", (500, N))
watched = test_images[:1], test_values[0]


@eqx.filter_jit
def train_step(model, opt_state, key):
    images, values = numbers(key, "train", (SETS_PER_STEP, N))
    value, grads = eqx.filter_value_and_grad(loss)(model, images, values)
    updates, opt_state = optimiser.update(grads, opt_state, eqx.filter(model, eqx.is_array))
    return eqx.apply_updates(model, updates), opt_state, value


evaluate = eqx.filter_jit(accuracy)
watch = eqx.filter_jit(lambda model: permutation(model, watched[0])[0])
history = {"step": [], "exact": [], "elementwise": [], "P": []}
for step in tqdm(range(STEPS + 1), desc="ranking supervision", disable=None):
    if step % EVERY == 0:
        exact, elementwise = evaluate(model, test_images, test_values)
        history["step"].append(step)
        history["exact"].append(float(exact))
        history["elementwise"].append(float(elementwise))
        history["P"].append(np.asarray(watch(model)))
    if step < STEPS:
        model, opt_state, _ = train_step(model, opt_state, jax.random.key(1000 + step))

print(f"held-out sets of n = {N} after {STEPS} steps:")
print(f"  exact match  {history['exact'][-1]:.3f}  (chance {1 / np.prod(range(1, N + 1)):.3f})")
print(f"  element-wise {history['elementwise'][-1]:.3f}  (chance {1 / N:.3f})")

# %%
# Accuracy on held-out numbers
# ----------------------------
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(history["step"], history["exact"], label="exact match (whole ranking)")
ax.plot(history["step"], history["elementwise"], label="element-wise (each position)")
ax.axhline(1 / N, color="gray", linestyle=":", linewidth=1, label="chance, element-wise")
ax.set_xlabel("training step")
ax.set_ylabel(f"held-out accuracy, n = {N}")
ax.set_ylim(0, 1)
ax.legend(loc="lower right")
fig.tight_layout()
save_figure(fig, "ranking_accuracy")

# %%
# The soft permutation of one held-out set converging to the true one (saved as a GIF): rows are
# sorted positions, columns the numbers as drawn; the circles mark the true permutation.
true_order = np.argsort(np.asarray(watched[1]))
fig_anim, ax = plt.subplots(figsize=(4, 4))
shown = ax.imshow(history["P"][0], vmin=0, vmax=1, cmap="viridis")
ax.scatter(true_order, np.arange(N), s=260, facecolors="none", edgecolors="white", linewidths=1.5)
ax.set_xticks(range(N), [f"{int(v):0{DIGITS}d}" for v in watched[1]], rotation=45)
ax.set_yticks(range(N))
ax.set_xlabel("number i")
ax.set_ylabel("sorted position j")
title = ax.set_title("")


def draw(frame):
    shown.set_data(history["P"][frame])
    title.set_text(f"P after {history['step'][frame]} steps")
    return [shown, title]


animation = FuncAnimation(fig_anim, draw, frames=len(history["P"]), blit=False)
animation.save(output_dir() / "ranking_permutation.gif", writer=PillowWriter(fps=6))
draw(len(history["P"]) - 1)
fig_anim.tight_layout()
save_figure(fig_anim, "ranking_permutation")
plt.show()
