"""Elementary functions in plain arithmetic, for float32 loops that should vectorise.

numba turns math.erf / math.exp into scalar libm calls, which stop LLVM's
loop vectoriser (there is no vector math library here): a loop over a
float32 array that calls them runs at ~2-20 ns per element. These versions
are polynomials and rational functions only, evaluated in float64, accurate
to well inside float32 precision; the kernels use them for float32 arrays
and keep math.* for float64 (whose results the tests compare at 1e-12).
"""
from ._jit import kernel


@kernel
def erf32(x):
    """erf: the rational fit on [-4, 4] that Eigen and XLA use for float32.

    Within 1e-7 of erf, saturating to +-1 outside (as float32 erf does).
    """
    v = min(max(x, -4.0), 4.0)
    v2 = v * v
    p = v2 * -2.72614225801306e-10 + 2.77068142495902e-08
    p = v2 * p + -2.10102402082508e-06
    p = v2 * p + -5.69250639462346e-05
    p = v2 * p + -7.34990630326855e-04
    p = v2 * p + -2.95459980854025e-03
    p = v2 * p + -1.60960333262415e-02
    p = v * p
    q = v2 * -1.45660718464996e-05 + -2.13374055278905e-04
    q = v2 * q + -1.68282697438203e-03
    q = v2 * q + -7.37332916720468e-03
    q = v2 * q + -1.42647390514189e-02
    return p / q


@kernel
def exp_neg(u):
    """exp(-u) for u >= 0 (u = +inf gives 0, NaN stays NaN).

    exp(-u) = (exp(-u/1024))**1024: a degree-6 Taylor polynomial at u/1024
    (relative error < 3e-8 after the ten squarings for every u whose result is
    a float32 number, u < 104). u is capped at 1000, where the result
    underflows to 0 even in float64, so a masked (-inf) logit gives exactly 0.
    """
    v = min(u, 1000.0) * (1.0 / 1024.0)
    t = 1.0 - v * (1.0 - v * 0.5 * (1.0 - v * (1.0 / 3.0) * (1.0 - v * 0.25 * (1.0 - v * 0.2 * (1.0 - v * (1.0 / 6.0))))))
    for _ in range(10):
        t = t * t
    return t
