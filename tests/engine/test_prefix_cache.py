from thrifty.engine.prefix_cache import PrefixCache


def test_longest_common_prefix_wins() -> None:
    cache = PrefixCache(slots=4)
    cache.add(1, [1, 2, 3, 4, 5])
    cache.add(2, [1, 2, 9, 9])
    entry, n = cache.lookup([1, 2, 3, 4, 8], min_tokens=2)
    assert entry is not None and entry.seq_id == 1 and n == 4


def test_short_matches_are_misses() -> None:
    cache = PrefixCache(slots=4)
    cache.add(1, [1, 2, 3])
    assert cache.lookup([1, 2, 7], min_tokens=3) == (None, 0)
    assert cache.misses == 1


def test_lru_eviction_by_slots_and_tokens() -> None:
    cache = PrefixCache(slots=2, token_budget=10)
    assert cache.add(1, [1] * 4) == []
    assert cache.add(2, [2] * 4) == []
    cache.lookup([1] * 4, min_tokens=1)  # 1 is now most recently used
    assert cache.add(3, [3] * 4) == [2]
    assert cache.add(4, [4] * 8) == [1, 3]


def test_an_extension_replaces_its_prefix() -> None:
    cache = PrefixCache(slots=4)
    cache.add(1, [1, 2, 3])
    assert cache.add(2, [1, 2, 3, 4]) == [1]
    assert len(cache) == 1
