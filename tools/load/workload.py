"""The seeded workload: value sizes, zipfian or uniform keys, the operations of each
client's transactions, and the population of the key space before a run.  The same
seed and options give the same stream in every process and against every engine."""

from __future__ import annotations

import argparse
import math
import random
import time

from jetstore.tools.sizes import parse_size

MAX_VALUE = 16 << 20  # engine.writeset.MAX_VALUE_SIZE


def value_bytes(text: str) -> int:
    """A value's size: 100, 4K, 1M (powers of 1024), at most ``MAX_VALUE``."""
    value = parse_size(text)
    if value > MAX_VALUE:
        raise argparse.ArgumentTypeError(f"{text}: a value holds at most 16M ({MAX_VALUE:,} B)")
    return value


class ValueSize:
    """A value size distribution: ``N`` / ``fixed:N``, ``uniform:MIN-MAX``,
    ``lognormal:MEDIAN,SIGMA`` (clamped to 1 byte..16 MiB)."""

    def __init__(self, spec: str) -> None:
        self.spec = spec
        kind, _, rest = spec.partition(":") if ":" in spec else ("fixed", "", spec)
        try:
            if kind == "fixed":
                self.kind, self.low = "fixed", value_bytes(rest)
                self.high = self.low
            elif kind == "uniform":
                low, high = rest.split("-")
                self.kind, self.low, self.high = "uniform", value_bytes(low), value_bytes(high)
                if self.low > self.high:
                    raise argparse.ArgumentTypeError(f"{spec}: MIN > MAX")
            elif kind == "lognormal":
                median, sigma = rest.split(",")
                self.kind, self.median, self.sigma = "lognormal", value_bytes(median), float(sigma)
                if self.median < 1 or self.sigma < 0:
                    raise argparse.ArgumentTypeError(f"{spec}: MEDIAN >= 1 and SIGMA >= 0")
                self.low, self.high = 1, MAX_VALUE
            else:
                raise argparse.ArgumentTypeError(
                    f"{spec}: expected N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA"
                )
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{spec}: expected N, fixed:N, uniform:MIN-MAX or lognormal:MEDIAN,SIGMA"
            ) from None

    def draw(self, rng: random.Random) -> int:
        if self.kind == "fixed":
            return self.low
        if self.kind == "uniform":
            return rng.randint(self.low, self.high)
        size = round(self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0)))
        return min(max(size, 1), MAX_VALUE)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.low} B"
        if self.kind == "uniform":
            return f"uniform {self.low}-{self.high} B"
        return f"lognormal median {self.median} B sigma {self.sigma:g}"

    def __repr__(self) -> str:  # argparse prints it in errors; JSON gets ``spec``
        return self.spec


class Zipf:
    """Ranks 1..n with P(k) ~ 1/k**s, by rejection-inversion (Hoermann & Derflinger
    1996, as in Apache Commons RNG): O(1) per draw, no table, any s > 0."""

    def __init__(self, n: int, s: float) -> None:
        if n < 1 or s <= 0:
            raise ValueError("zipf needs n >= 1 and s > 0")
        self.n, self.s = n, s
        self.h_x1 = self._h_integral(1.5) - 1.0
        self.h_n = self._h_integral(n + 0.5)
        self.squeeze = 2.0 - self._h_integral_inverse(self._h_integral(2.5) - self._h(2.0))

    def _h(self, x: float) -> float:
        return math.exp(-self.s * math.log(x))

    def _h_integral(self, x: float) -> float:
        log_x = math.log(x)
        return _expm1_over_x((1.0 - self.s) * log_x) * log_x

    def _h_integral_inverse(self, x: float) -> float:
        t = max(x * (1.0 - self.s), -1.0)
        return math.exp(_log1p_over_x(t) * x)

    def draw(self, rng: random.Random) -> int:
        while True:
            u = self.h_n + rng.random() * (self.h_x1 - self.h_n)
            x = self._h_integral_inverse(u)
            k = min(max(int(x + 0.5), 1), self.n)
            if k - x <= self.squeeze or u >= self._h_integral(k + 0.5) - self._h(k):
                return k


def _expm1_over_x(x: float) -> float:
    return math.expm1(x) / x if abs(x) > 1e-8 else 1.0 + x * 0.5 * (1.0 + x / 3.0 * (1.0 + x / 4))


def _log1p_over_x(x: float) -> float:
    return math.log1p(x) / x if abs(x) > 1e-8 else 1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))


def key_bytes(index: int) -> bytes:
    return b"key%012d" % index


class Workload:
    """The operations of one client's stream: deterministic in (seed, stream name).

    A transaction is KEYS_PER_TX operations, each (key, None) for a read or
    (key, value) for a write.  Zipfian ranks are scattered over the key space by
    one affine permutation shared by every client (the same keys are hot for
    all of them, as in YCSB's scrambled zipfian)."""

    def __init__(self, config: dict, stream: str) -> None:
        seed = config["seed"]
        self.rng = random.Random(f"{seed}/{stream}")
        self.keys = config["keys"]
        self.read_ratio = config["read_ratio"]
        self.per_tx = config["keys_per_tx"]
        self.sizes = ValueSize(config["value_size"])
        self.zipf = Zipf(self.keys, config["zipf_s"]) if config["key_dist"] == "zipfian" else None
        perm = random.Random(f"{seed}/permutation")
        self.mul = perm.randrange(1, self.keys) if self.keys > 1 else 1
        while math.gcd(self.mul, self.keys) != 1:
            self.mul += 1
        self.add = perm.randrange(self.keys)
        self.buffer = value_buffer(seed, self.sizes.high)

    def key_index(self) -> int:
        if self.zipf is None:
            return self.rng.randrange(self.keys)
        return (self.mul * (self.zipf.draw(self.rng) - 1) + self.add) % self.keys

    def value(self) -> bytes:
        size = self.sizes.draw(self.rng)
        offset = self.rng.randrange(len(self.buffer) - size + 1)
        return self.buffer[offset : offset + size]

    def transaction(self) -> list[tuple[bytes, bytes | None]]:
        ops = []
        for _ in range(self.per_tx):
            key = key_bytes(self.key_index())
            ops.append((key, None if self.rng.random() < self.read_ratio else self.value()))
        return ops


def value_buffer(seed: int, largest: int) -> bytes:
    """Random bytes values are sliced from (incompressible; the same in every process)."""
    return random.Random(f"{seed}/values").randbytes(largest + 4096)


def populate(put_batch, workload_config: dict, keys: int) -> float:
    """Write every key once (values from the size distribution, seeded); seconds taken."""
    began = time.perf_counter()
    rng = random.Random(f"{workload_config['seed']}/populate")
    sizes = ValueSize(workload_config["value_size"])
    buffer = value_buffer(workload_config["seed"], sizes.high)
    batch, batch_bytes = [], 0
    for index in range(keys):
        size = sizes.draw(rng)
        offset = rng.randrange(len(buffer) - size + 1)
        batch.append((key_bytes(index), buffer[offset : offset + size]))
        batch_bytes += size
        if len(batch) >= 1000 or batch_bytes >= 4 << 20 or index == keys - 1:
            put_batch(batch, index == keys - 1)
            batch, batch_bytes = [], 0
    return time.perf_counter() - began
