"""Small formatters of the report page (escaping, numbers, bytes, times, figures)."""

from __future__ import annotations

import base64
import html
from typing import Any

def _figure(png: bytes, caption: str, *, wide: bool = False) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return (f"<figure{' class=wide' if wide else ''}><img alt='{_e(caption)}' src='data:image/png;base64,{b64}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x, spec: str = ".4f") -> str:
    if x is None or isinstance(x, bool):
        return "–"
    try:
        return format(int(x) if spec == "d" else float(x), spec)
    except (TypeError, ValueError):
        return _e(x)


def _bytes(n) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


def _when(t) -> str:
    if not t:
        return "?"
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))


def _iv_strength(v: float) -> str:
    return ("useless" if v < 0.02 else "weak" if v < 0.1 else "medium" if v < 0.3 else "strong" if v < 0.5
            else "very strong (> 0.5: check for leakage)")
