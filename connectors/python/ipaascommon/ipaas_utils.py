"""Small helpers PowerFlow steps import from ``ipaascommon.ipaas_utils``.

Also holds the JSON transport used between stepflow and Python steps
(``to_transport`` / ``from_transport``): bytes, which JSON cannot carry,
travel as ``{"__bytes_b64__": "<base64>"}`` and come back as ``bytes``.
"""

import base64
import datetime
import decimal
import math

BYTES_KEY = "__bytes_b64__"

_TRUE = {"true", "t", "yes", "y", "1", "on"}
_FALSE = {"false", "f", "no", "n", "0", "off", "", "none", "null"}


def str_to_bool(value, default=False):
    """Reads a bool from a bool, a number or a string such as "true"/"no"/"1".

    ``None`` and unrecognised strings give ``default``.
    """
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return default


def chunks(items, size):
    """Yields successive lists of at most ``size`` items."""
    size = int(size)
    if size <= 0:
        raise ValueError("chunk size must be positive")
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def get_nested(obj, path, default=None, sep="."):
    """``get_nested({"a": {"b": [1, 2]}}, "a.b.1")`` → 2; ``default`` when absent."""
    cur = obj
    for part in str(path).split(sep) if path != "" else []:
        if isinstance(cur, dict):
            if part not in cur:
                return default
            cur = cur[part]
        elif isinstance(cur, (list, tuple)):
            try:
                cur = cur[int(part)]
            except (ValueError, IndexError):
                return default
        else:
            return default
    return cur


def to_list(value):
    """``None`` → ``[]``, a list stays, a tuple/set becomes a list, anything else → ``[value]``."""
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    return [value]


# -- JSON transport -----------------------------------------------------------


def to_transport(obj):
    """Returns a JSON-safe copy of ``obj``.

    bytes/bytearray → ``{"__bytes_b64__": ...}``; tuples and sets → lists;
    datetime/date/time → ISO strings; Decimal → float; NaN/inf → None.
    Raises ``TypeError`` for anything else JSON cannot hold.
    """
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {BYTES_KEY: base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str):
                key = k
            elif k is None or isinstance(k, (bool, int, float)):
                key = "null" if k is None else ("true" if k is True else "false" if k is False else str(k))
            else:
                raise TypeError(f"dict key {k!r} of type {type(k).__name__} is not JSON-serialisable")
            out[key] = to_transport(v)
        return out
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_transport(v) for v in obj]
    if isinstance(obj, (datetime.datetime, datetime.date, datetime.time)):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return float(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON-serialisable")


def from_transport(obj):
    """The inverse of ``to_transport`` for bytes: ``{"__bytes_b64__": s}`` → bytes."""
    if isinstance(obj, dict):
        if len(obj) == 1 and BYTES_KEY in obj and isinstance(obj[BYTES_KEY], str):
            try:
                return base64.b64decode(obj[BYTES_KEY], validate=True)
            except (ValueError, TypeError):
                return obj
        return {k: from_transport(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_transport(v) for v in obj]
    return obj
