"""Fixed-point encoding of floats for the Paillier engine (and OU): ``x -> round(x * 2^frac_bits)``."""

from __future__ import annotations

import math

import numpy as np

from ...errors import ConfigError, DataError

__all__ = ["DEFAULT_FRAC_BITS", "FixedPoint"]

#: Default fixed-point precision: values are multiples of ``2^-32``.
DEFAULT_FRAC_BITS = 32


class FixedPoint:
    """Signed fixed-point encoding of floats: ``x -> round(x * 2^frac_bits)``.

    Parameters
    ----------
    frac_bits : int, default=32
        Binary digits after the point.  Encoding error is at most
        ``2^-(frac_bits+1)`` per value (1.2e-10 at 32); a sum of ``k`` encoded
        values is off by at most ``k`` times that.  Any magnitude up to
        ``n / 2^(frac_bits+1)`` is representable (``> 10^590`` at 2048 bits);
        decoding goes through float64 (53-bit mantissa).
    """

    def __init__(self, *, frac_bits: int = DEFAULT_FRAC_BITS):
        if isinstance(frac_bits, bool) or not isinstance(frac_bits, (int, np.integer)) or not 0 <= frac_bits <= 1024:
            raise ConfigError(f"The 'frac_bits' parameter of FixedPoint must be an int in [0, 1024]. Got {frac_bits!r} instead.")
        self.frac_bits = int(frac_bits)

    def encode(self, x) -> list[int]:
        """Floats → Python ints (exact rounding, any magnitude)."""
        a = np.asarray(x, dtype=np.float64).ravel()
        if not np.all(np.isfinite(a)):
            raise DataError("cannot encode NaN or infinite values")
        scaled = np.rint(np.ldexp(a, self.frac_bits))
        if not np.all(np.isfinite(scaled)):
            raise DataError(f"value too large for frac_bits={self.frac_bits}")
        if scaled.size == 0 or np.abs(scaled).max() < 2.0**62:
            return scaled.astype(np.int64).tolist()
        return [int(v) for v in scaled.tolist()]

    def decode(self, ints) -> np.ndarray:
        """Signed ints → float64 (``OverflowError`` if beyond the float range)."""
        f = self.frac_bits
        out = np.empty(len(ints), dtype=np.float64)
        for i, v in enumerate(ints):
            out[i] = math.ldexp(float(v), -f) if abs(v) < 2**1000 else float(v) / float(2**f) if f else float(v)
        return out
