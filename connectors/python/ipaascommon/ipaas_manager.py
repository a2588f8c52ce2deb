"""``IpaasContentManager``: the application cache, as PowerFlow steps use it.

Under stepflow the cache is stepflow's LMDB cache (the one the CacheSave /
CacheRead / CacheDelete steps use). Inside the step host every operation is a
``cache`` request on the step protocol; the host blocks until the runtime's
``cache_result`` answers it. Values go through the same JSON transport as step
data, so bytes come back as bytes.

Outside the host (a step instantiated in a plain unit test) a process-local
dictionary stands in, so steps can be exercised without stepflow.
"""

import threading
import time

from ipaascommon.ipaas_exceptions import CacheException, CacheKeyNotFound
from ipaascommon.ipaas_utils import chunks, from_transport, to_transport

_backend = None  # set by the step host: callable(op, fields_dict) -> value


def set_cache_backend(fn):
    """Used by the step host. ``fn(op, fields)`` returns the answer's value or raises CacheException."""
    global _backend
    _backend = fn


class _LocalCache:
    def __init__(self):
        self._lock = threading.Lock()
        self._data = {}

    def __call__(self, op, fields):
        key = fields["key"]
        now = time.time()
        with self._lock:
            if op == "get":
                item = self._data.get(key)
                if item is None:
                    return None
                value, expires = item
                if expires and expires <= now:
                    del self._data[key]
                    return None
                return value
            if op == "save":
                ttl = fields.get("ttl")
                ttl = 86400 if ttl is None else ttl
                self._data[key] = (fields.get("value"), now + ttl if ttl else 0)
                return True
            if op == "delete":
                return self._data.pop(key, None) is not None
        raise CacheException(f"unknown cache operation {op!r}")


_local = _LocalCache()


def _request(op, **fields):
    if not isinstance(fields.get("key"), str) or not fields["key"]:
        raise CacheException("a cache key must be a non-empty string")
    backend = _backend or _local
    return backend(op, fields)


class _DbConnector:
    """The few ``cmanager.db_connector`` calls steps make, mapped onto the cache."""

    def __init__(self, manager):
        self._m = manager

    def batch_remove_keys_from_logs(self, keys):
        return [self._m.delete_from_cache(k) for k in keys]

    def remove(self, key):
        return self._m.delete_from_cache(key)

    def get(self, key):
        return self._m.get_from_cache(key)

    def upsert(self, key, value, ttl=None):
        return self._m.save_to_cache(key, value, ttl)


class IpaasContentManager:
    """``IpaasContentManager().save_to_cache(key, value)`` and friends."""

    def __init__(self, *args, **kwargs):
        self.db_connector = _DbConnector(self)

    def save_to_cache(self, key, value, ttl=None):
        """Stores ``value`` (JSON or bytes) under ``key``. ``ttl`` in seconds: None = 24 h, 0 = never expires."""
        fields = {"key": key, "value": to_transport(value)}
        if ttl is not None:
            fields["ttl"] = int(ttl)
        _request("save", **fields)
        return True

    def get_from_cache(self, key, default=None):
        """The value stored under ``key``, or ``default`` when there is none."""
        value = _request("get", key=key)
        return default if value is None else from_transport(value)

    def get_from_cache_or_raise(self, key):
        value = self.get_from_cache(key)
        if value is None:
            raise CacheKeyNotFound(f"no cache entry {key!r}")
        return value

    def delete_from_cache(self, key):
        """Removes ``key``; True when something was removed."""
        return bool(_request("delete", key=key))

    def batch_data_and_save_to_cache(self, data, key, batch_size=500, ttl=None):
        """Saves a large list (or dict) in batches.

        Batch ``i`` goes under ``f"{key}_{i}"``; ``key`` itself gets an index
        ``{"batches": n, "count": total, "keys": [...]}``. Returns the batch
        keys. ``get_batched_data_from_cache(key)`` puts the data back together.
        (Arguments given as ``(key, data)`` are accepted too.)
        """
        if isinstance(data, str) and not isinstance(key, str):
            data, key = key, data
        is_dict = isinstance(data, dict)
        items = list(data.items()) if is_dict else list(data or [])
        keys = []
        for i, batch in enumerate(chunks(items, batch_size)):
            k = f"{key}_{i}"
            self.save_to_cache(k, dict(batch) if is_dict else batch, ttl)
            keys.append(k)
        self.save_to_cache(key, {"batches": len(keys), "count": len(items), "keys": keys,
                                 "kind": "dict" if is_dict else "list"}, ttl)
        return keys

    def get_batched_data_from_cache(self, key):
        """The data saved by ``batch_data_and_save_to_cache(data, key)``, or None."""
        index = self.get_from_cache(key)
        if not isinstance(index, dict) or "keys" not in index:
            return None
        if index.get("kind") == "dict":
            out = {}
            for k in index["keys"]:
                out.update(self.get_from_cache(k) or {})
            return out
        out = []
        for k in index["keys"]:
            out.extend(self.get_from_cache(k) or [])
        return out
