"""The program of ``break_mixture.py``, in a module of its own: ``sf.relax`` converts Python
syntax from source files, and the plot directive runs figure scripts without one."""


def accumulate(x, threshold):
    total = 0.0
    for i in range(8):
        total = total + x[i]
        if total > threshold:
            break
        total = total * 0.9
    return total
