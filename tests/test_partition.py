"""Block decomposition: pure functions, checked exhaustively on small sizes."""

import numpy as np
import pytest

from hpcproc.partition import aligned_ranges, block_counts, block_offsets, block_range, owner_of


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 10, 11, 100])
def test_block_range_tiles_and_balances(n, size):
    ranges = [block_range(n, size, r) for r in range(size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    lengths = [b - a for a, b in ranges]
    assert max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)  # remainder to the first ranks
    np.testing.assert_array_equal(block_counts(n, size), lengths)
    np.testing.assert_array_equal(block_offsets(lengths), [a for a, _ in ranges])
    rows = np.arange(n)
    expect = np.repeat(np.arange(size), lengths)
    np.testing.assert_array_equal(owner_of(rows, lengths), expect)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("start,stop,align", [(0, 100, 7), (3, 95, 10), (0, 0, 4), (5, 6, 4),
                                              (0, 9, 100), (13, 13, 5)])
def test_aligned_ranges(start, stop, align, size):
    ranges = aligned_ranges(start, stop, align, size)
    assert len(ranges) == size
    assert ranges[0][0] == start and ranges[-1][1] == stop
    for (_, a1), (b0, _) in zip(ranges, ranges[1:]):
        assert a1 == b0
    for lo, hi in ranges:
        assert start <= lo <= hi <= stop
        if start < lo < stop:
            assert lo % align == 0  # inner boundaries on chunk boundaries
    chunks = [len(range(lo // align, -(-hi // align))) for lo, hi in ranges if hi > lo]
    if chunks:
        assert max(chunks) - min(chunks) <= 1 or len(chunks) < size


def test_bad_arguments():
    with pytest.raises(ValueError):
        block_range(-1, 2, 0)
    with pytest.raises(ValueError):
        block_range(10, 0, 0)
    with pytest.raises(ValueError):
        block_range(10, 2, 2)
    with pytest.raises(ValueError):
        aligned_ranges(0, 10, 0, 2)
