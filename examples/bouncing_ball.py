"""The bouncing ball of the gallery, as a program: where does a ball launched from the ground stop?

Shared by the pages ``algorithms/plot_bouncing_ball.py`` (aiming it with the relaxed program) and
``algorithms/plot_which_gradient.py`` (the gradient estimators compared on it). The simulation is
ordinary Python (``while``, ``if``): run it through :func:`softflow.relax` (``mode="hard"`` for
the exact program as JAX).
"""

import jax.numpy as jnp

import softflow as sf

G = 9.81  # gravity, m/s^2
DT = 0.02  # time step, s
RESTITUTION = 0.7  # vertical speed kept at a bounce
FRICTION = 0.85  # horizontal speed kept at a bounce
REST_HEIGHT = 0.2  # m: a ball that cannot bounce higher than this stops
MAX_STEPS = 320  # more steps than any launch of the pages needs (checked there)


def height(y, vy):
    """How high the ball can rise: its height plus its vertical kinetic energy, in metres."""
    return y + 0.5 * vy**2 / G


def step(x, y, vx, vy):
    """One time step of flight, with a bounce if the ball ended it below the ground."""
    x = x + vx * DT
    y = y + vy * DT - 0.5 * G * DT**2
    vy = vy - G * DT
    bounce = sf.exact(y < 0.0)  # kept exact: a half bounce is no bounce at all (see the page)
    if bounce:
        vy = RESTITUTION * jnp.sqrt(2 * G * height(y, vy))
        y = jnp.zeros_like(y)
        vx = FRICTION * vx
    return x, y, vx, vy, bounce


def simulate(speed, angle, target, step=step):
    """Where the ball stops, after how many bounces, and its squared distance to ``target``.

    ``step`` is one time step of flight (another ground bounces the ball differently).
    """
    x = y = jnp.zeros_like(speed)
    vx = speed * jnp.cos(angle)
    vy = speed * jnp.sin(angle)
    bounces = 0
    landed = jnp.array(False)
    miss = target**2
    while not landed or height(y, vy) > REST_HEIGHT:
        x, y, vx, vy, landed = step(x, y, vx, vy)
        bounces = bounces + landed
        miss = (x - target) ** 2
    return x, bounces, miss
