"""HDR-style latency histograms: log-linear buckets with a bounded relative error, which
client processes fill and send as bucket counts and the driver merges and reads
percentiles from."""

from __future__ import annotations

import math
from fractions import Fraction


class Histogram:
    """Counts of non-negative integers (microseconds here) in log-linear buckets.

    Values below ``2**sub_bits`` have a bucket each; above, every power-of-two
    range is cut into ``2**(sub_bits-1)`` equal buckets, so a bucket is never
    wider than 1/2**(sub_bits-1) of its lowest value.  ``sub_bits`` follows
    HdrHistogram: 2 significant decimal digits -> 8 bits -> relative error
    <= 1/128.  Percentiles are nearest-rank and report the bucket's highest
    value (clamped to the exact max), so they are never below the exact value
    and exceed it by less than that bound.  Sparse: only used buckets are kept,
    and ``to_wire``/``merge`` move bucket counts, never samples.
    """

    __slots__ = ("sub_bits", "half", "counts", "count", "min", "max", "sum")

    def __init__(self, significant_digits: int = 2) -> None:
        self.sub_bits = max(2, math.ceil(math.log2(2 * 10**significant_digits)))
        self.half = 1 << (self.sub_bits - 1)
        self.counts: dict[int, int] = {}
        self.count = 0
        self.min: int | None = None
        self.max: int | None = None
        self.sum = 0

    @property
    def relative_error(self) -> float:
        return 1 / self.half

    def index(self, value: int) -> int:
        shift = value.bit_length() - self.sub_bits
        if shift <= 0:
            return value
        return shift * self.half + (value >> shift)

    def bucket_range(self, index: int) -> tuple[int, int]:
        """(lowest, highest) value that lands in bucket ``index``."""
        if index < 2 * self.half:
            return index, index
        shift = index // self.half - 1
        top = index - shift * self.half
        return top << shift, ((top + 1) << shift) - 1

    def record(self, value: int, n: int = 1) -> None:
        if value < 0:
            raise ValueError(f"negative value {value}")
        index = self.index(value)
        self.counts[index] = self.counts.get(index, 0) + n
        self.count += n
        self.sum += value * n
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value

    def merge(self, other: Histogram) -> Histogram:
        if other.sub_bits != self.sub_bits:
            raise ValueError("histograms of different precision")
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.sum += other.sum
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        return self

    def to_wire(self) -> tuple:
        return (self.sub_bits, self.counts, self.count, self.min, self.max, self.sum)

    @classmethod
    def from_wire(cls, wire) -> Histogram:
        hist = cls.__new__(cls)
        sub_bits, counts, hist.count, hist.min, hist.max, hist.sum = wire
        hist.sub_bits, hist.half = sub_bits, 1 << (sub_bits - 1)
        hist.counts = {int(k): v for k, v in counts.items()}
        return hist

    def percentile(self, percent: float) -> int | None:
        """Nearest-rank percentile: the smallest recorded value with at least
        ``percent``% of the values at or below it (to the histogram's precision)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(Fraction(str(percent)) * self.count / 100))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return max(self.min, min(self.bucket_range(index)[1], self.max))
        return self.max

    def buckets(self) -> list[list[int]]:
        """[lowest, highest, count] of every used bucket, ascending."""
        return [[*self.bucket_range(i), self.counts[i]] for i in sorted(self.counts)]


def exact_percentile(samples: list[int], percent: float) -> int:
    """The nearest-rank percentile of raw samples (what ``Histogram.percentile`` bounds)."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(Fraction(str(percent)) * len(ordered) / 100))
    return ordered[rank - 1]
