"""cache: the isolate cache is bounded by bytes, expires entries, and evicts least recently used first."""

from personalizer.cache import ENTRY_OVERHEAD, SharedCache


def test_cache_expires_entries() -> None:
    """An entry is a hit before its TTL and a miss after."""
    c = SharedCache(10_000)
    c.put("k", "v", 10, ttl_s=5, now=100)
    assert c.get("k", 104.9) == (True, "v")
    assert c.get("k", 105) == (False, None)
    assert c.bytes == 0


def test_cache_stays_within_its_byte_budget_evicting_lru() -> None:
    """Adding past the budget evicts the least recently used entries first."""
    c = SharedCache(3 * (100 + ENTRY_OVERHEAD))
    for k in "abc":
        c.put(k, k, 100, ttl_s=60, now=0)
    c.get("a", 1)  # a is now most recently used
    c.put("d", "d", 100, ttl_s=60, now=1)
    assert c.get("b", 1) == (False, None)
    assert all(c.get(k, 1)[0] for k in "acd")
    assert c.bytes <= c.max_bytes


def test_cache_refuses_an_entry_larger_than_the_budget_and_caches_misses() -> None:
    """An oversized value is not cached; a cached None (known miss) is a hit."""
    c = SharedCache(1000)
    c.put("big", "x", 5000, ttl_s=60, now=0)
    assert c.get("big", 0) == (False, None) and len(c) == 0
    c.put("gone", None, 0, ttl_s=60, now=0)
    assert c.get("gone", 0) == (True, None)
