"""message_id: ULIDs, fixed width, sorted as made, never repeated within a process."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from shared import ids


def test_ids_are_fixed_width_crockford_base32_in_time_order() -> None:
    clock = [1_700_000_000_000]
    generator = ids.UlidGenerator(clock_ms=lambda: clock[0])
    made = []
    for _ in range(50):
        made.append(generator.new())
        clock[0] += 1
    assert all(len(i) == 26 and ids.is_ulid(i) for i in made)
    assert made == sorted(made)
    assert ids.timestamp_ms(made[0]) == 1_700_000_000_000


def test_ids_in_one_millisecond_and_after_the_clock_steps_back_still_increase() -> None:
    clock = [1_700_000_000_000]
    # The worst random draw: each id's random part lower than the one before.
    draws = iter(range(10_000, 0, -1))
    generator = ids.UlidGenerator(clock_ms=lambda: clock[0], random_bits=lambda: next(draws))
    first = [generator.new() for _ in range(100)]
    clock[0] -= 5_000  # NTP stepped the clock back 5 s
    later = [generator.new() for _ in range(100)]
    made = first + later
    assert made == sorted(made) and len(set(made)) == 200


def test_ids_from_many_threads_never_repeat() -> None:
    generator = ids.UlidGenerator(clock_ms=lambda: 1_700_000_000_000, random_bits=lambda: 7)
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda _: generator.new(), range(2000)))
    assert len(set(made)) == 2000


def test_neighbours_and_bounds() -> None:
    some = ids.encode(12345 << 80 | 99)
    assert ids.successor(some) == ids.encode(12345 << 80 | 100)
    assert ids.predecessor(some) == ids.encode(12345 << 80 | 98)
    assert ids.successor(ids.MAX_ID) is None and ids.predecessor(ids.MIN_ID) is None
    assert ids.lowest_at(12345) == ids.encode(12345 << 80) <= some
    assert ids.decode(ids.MAX_ID) == ids.MAX_VALUE and ids.is_ulid(ids.MAX_ID)
    assert not ids.is_ulid("8" + "0" * 25) and not ids.is_ulid("0" * 25 + "U") and not ids.is_ulid(None)
