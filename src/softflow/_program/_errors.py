"""The errors of :func:`softflow.relax`."""

#: Why an integer is known only by its expected value, and how to keep it a distribution.
EXPECTED_WHY = (
    "an integer known only by its expected value (a sum or running sum of relaxed integers that "
    "are not 0/1 truth values, a count of more than 4,096 truth values, or an integer carried "
    "through a relaxed loop whose range is not known at trace time or has more than {} values)"
)
EXPECTED_ADVICE = (
    "in a Python for loop, unroll it (sf.relax(..., unroll=True)), where each pass keeps the "
    "laws of its integers; or bound every integer the loop carries where it is computed, "
    "jnp.clip(i, 0, K - 1) with K <= {}, so that relax carries it as a distribution over K "
    "values (a clip after a sum does not help: sum or cumsum truth values, x > t, whose counts "
    "keep their exact law); a loop integer that starts from an array argument (every argument "
    "is one under jax.jit) has no range known at trace time however it is clipped: pass its "
    "start as a Python int (static_argnums under jax.jit); or keep it exact with sf.exact on "
    "the condition it comes from (no gradient through it)"
)


class RelaxError(TypeError):
    """A part of the program that :func:`softflow.relax` cannot relax.

    The message names the operation, the user's source line and what to write instead. Raised
    when the relaxed function is called (or explained), never silently replaced by a hard value
    with a zero gradient.

    Example:
        >>> import jax.numpy as jnp
        >>> import softflow as sf
        >>> def next_float(x):
        ...     return jnp.nextafter(x, jnp.inf)  # no soft counterpart
        >>> try:
        ...     sf.relax(next_float)(1.0)
        ... except sf.RelaxError as error:
        ...     print(str(error)[:37])
        sf.relax cannot relax `nextafter` at
    """


class ExpectedIntegerError(RelaxError):
    """An integer known only by its expected value used where a distribution is needed (an
    index, a branch index, a selector): relax tries again with the loops analysed more
    precisely before it raises this (see ``Interpreter.precise_loops``)."""


class ConversionError(RelaxError):
    """Python syntax that :func:`softflow.relax` cannot convert from Python to JAX.

    Raised while converting or tracing the function (``if`` / ``while`` / ``for`` on traced
    values that have no relaxed meaning), with the user's source line. A subclass of
    :class:`RelaxError`, so ``except sf.RelaxError`` catches both.

    Example:
        >>> import softflow as sf
        >>> issubclass(sf.ConversionError, sf.RelaxError)
        True
    """


class TooManyOutcomes(Exception):
    """Relaxed integers whose joint distribution would have more outcomes than relax weighs;
    the interpreter turns it into a :class:`RelaxError` naming the operation."""

    def __init__(self, outcomes: int, most: int):
        super().__init__(outcomes, most)
        self.outcomes, self.most = outcomes, most
