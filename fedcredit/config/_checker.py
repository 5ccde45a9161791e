"""The checking machinery of config files: one collector of problems, each naming the file and the key.

Also the parsing helpers shared by the party config and the job file
(TOML reading, ``host:port`` addresses, name checks) and the frozen-mapping
helpers of a job's step parameters as written.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from .. import ids as _ids
from ..errors import ConfigError

__all__ = ["parse_address"]

_HOST_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "an array",
               dict: "a table"}


def _tname(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, list):
        return "array"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return type(v).__name__


class _Checker:
    """Collects problems for one file; every message names the file and the key."""

    def __init__(self, source: str, base_dir: Path | None):
        self.source = source
        self.base = base_dir
        self.problems: list[str] = []

    def add(self, key: str, msg: str) -> None:
        self.problems.append(f"{self.source}: {key}: {msg}" if key else f"{self.source}: {msg}")

    def table(self, data: Any, key: str, allowed: set[str] | None, required: set[str] = frozenset()) -> dict:
        """A TOML table; flags unknown and missing keys. Returns {} when it is not a table."""
        if not isinstance(data, dict):
            self.add(key, f"must be a table, got {_tname(data)}")
            return {}
        if allowed is not None:
            for k in data:
                if k not in allowed:
                    self.add(_join(key, k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required):
            if k not in data:
                self.add(_join(key, k), "missing required key")
        return data

    def get(self, data: dict, key: str, name: str, typ, default=..., *, check=None):
        """Typed value ``data[name]``; returns ``default`` (or None) on problems."""
        full = _join(key, name)
        if name not in data:
            return None if default is ... else default
        v = data[name]
        ok = (isinstance(v, typ) and not (typ in (int, float) and isinstance(v, bool))) or (
            typ is float and isinstance(v, int) and not isinstance(v, bool)
        )
        if not ok:
            self.add(full, f"must be {_TYPE_NAMES.get(typ, typ.__name__)}, got {_tname(v)} {v!r}"[:200])
            return None if default is ... else default
        if typ is float:
            v = float(v)
            if not math.isfinite(v):
                self.add(full, f"must be finite, got {v}")
                return None if default is ... else default
        if check is not None:
            msg = check(v)
            if msg:
                self.add(full, msg)
                return None if default is ... else default
        return v

    def str_list(self, data: dict, key: str, name: str, *, check_item=None) -> tuple[str, ...] | None:
        full = _join(key, name)
        v = self.get(data, key, name, list)
        if v is None:
            return None
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, str):
                self.add(f"{full}[{i}]", f"must be a string, got {_tname(item)} {item!r}")
                continue
            if check_item:
                msg = check_item(item)
                if msg:
                    self.add(f"{full}[{i}]", msg)
                    continue
            out.append(item)
        return tuple(out)

    def path(self, data: dict, key: str, name: str, *, must_exist: bool, hint: str = "") -> Path | None:
        v = self.get(data, key, name, str, check=lambda s: None if s.strip() else "must not be empty")
        if v is None:
            return None
        p = Path(os.path.expanduser(v))
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        p = Path(os.path.normpath(p))
        if must_exist and not p.is_file():
            what = "is a directory, not a file" if p.is_dir() else "file not found"
            self.add(_join(key, name), f"{what}: {p}{hint}")
        return p

    def raise_if_any(self) -> None:
        if self.problems:
            n = len(self.problems)
            head = self.problems[0] if n == 1 else f"{n} problems in {self.source}:\n  " + "\n  ".join(self.problems)
            raise ConfigError(head, self.problems)


def _join(key: str, name: str) -> str:
    return f"[{name}]" if not key else f"{key}.{name}"


def _check_name(s: str) -> str | None:
    return None if _ids.is_name(s) else "must be a party name: 1-63 characters of [a-z0-9_-], starting with a letter or digit"


def _parse_toml(path: Path) -> dict:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found", [f"{path}: file not found"]) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file", [f"{path}: is a directory"]) from None
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror or exc}"
        raise ConfigError(msg, [msg]) from None
    try:
        return tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        msg = f"{path}: not UTF-8 text"
        raise ConfigError(msg, [msg]) from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: invalid TOML: {exc}"
        raise ConfigError(msg, [msg]) from None


def parse_address(addr: str, *, allow_port_zero: bool = True) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:port`` for IPv6) and check both parts.

    Raises
    ------
    ConfigError
        With a message saying what is wrong (no file or key: callers add them).
    """
    if not isinstance(addr, str) or ":" not in addr:
        raise ConfigError(f"address {addr!r} must look like host:port (e.g. 127.0.0.1:7301)")
    if addr.startswith("["):
        host, sep, port_s = addr[1:].partition("]:")
        if not sep or not host:
            raise ConfigError(f"address {addr!r} must look like [ipv6]:port")
    else:
        host, _, port_s = addr.rpartition(":")
        if not host or ":" in host or not _HOST_RE.fullmatch(host):
            raise ConfigError(f"address {addr!r} must look like host:port (e.g. 127.0.0.1:7301)")
    if not port_s.isdigit():
        raise ConfigError(f"address {addr!r}: port {port_s!r} is not a number")
    port = int(port_s)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        lo = 0 if allow_port_zero else 1
        raise ConfigError(f"address {addr!r}: port {port} is outside {lo}..65535")
    return host, port


def _addr_check(allow_zero: bool):
    def check(s: str) -> str | None:
        try:
            parse_address(s, allow_port_zero=allow_zero)
        except ConfigError as exc:
            return str(exc)
        return None

    return check


def _freeze(v):
    if isinstance(v, dict):
        return MappingProxyType({k: _freeze(x) for k, x in v.items()})
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v):
    if isinstance(v, Mapping):
        return {k: _thaw(x) for k, x in v.items()}
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v

