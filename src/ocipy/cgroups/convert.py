"""cgroup v1 <-> v2 value translations, as runc does them.

The runtime-spec speaks cgroup v1 (cpu shares, blkio weight, memory+swap);
on a v2 host those values are converted to what the v2 files expect, with
the formulas of runc's libcontainer/cgroups (ConvertCPUSharesToCgroupV2Value,
ConvertBlkIOToIOWeightValue, ConvertMemorySwapToCgroupV2Value) so a
container gets the same limits from ocipy and runc.
"""
from __future__ import annotations


CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262144
CPU_WEIGHT_MIN = 1
CPU_WEIGHT_MAX = 10000

BLKIO_WEIGHT_MIN = 10
BLKIO_WEIGHT_MAX = 1000


def cpu_shares_to_weight(shares: int) -> int:
    """cpu.shares [2, 262144] -> cpu.weight [1, 10000]; 0 stays 0 ("unset").

    runc's quadratic fit in log2 space: it maps the minimum, the default
    (1024 -> 100) and the maximum exactly, where the older linear formula
    gave the default 39.
    """
    if shares == 0:
        return 0
    if shares <= CPU_SHARES_MIN:
        return CPU_WEIGHT_MIN
    if shares >= CPU_SHARES_MAX:
        return CPU_WEIGHT_MAX
    import math  # off the path of every create that sets no cpu shares

    log = math.log2(shares)
    exponent = (log * log + 125 * log) / 612.0 - 7.0 / 34.0
    return math.ceil(math.pow(10, exponent))


def cpu_weight_to_shares(weight: int) -> int:
    """The inverse of cpu_shares_to_weight: the smallest shares that give ``weight``.

    The forward function is monotonic, so a bisection over the shares range
    finds it exactly; 0 stays 0.
    """
    if weight == 0:
        return 0
    weight = min(max(weight, CPU_WEIGHT_MIN), CPU_WEIGHT_MAX)
    low, high = CPU_SHARES_MIN, CPU_SHARES_MAX
    while low < high:
        middle = (low + high) // 2
        if cpu_shares_to_weight(middle) >= weight:
            high = middle
        else:
            low = middle + 1
    return low


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight [10, 1000] -> io.weight [1, 10000]; 0 stays 0 (runc's linear map)."""
    if weight == 0:
        return 0
    return 1 + (weight - BLKIO_WEIGHT_MIN) * 9999 // 990


def io_weight_to_blkio_weight(weight: int) -> int:
    """io.weight [1, 10000] -> blkio.weight [10, 1000]; 0 stays 0.

    The smallest blkio weight that maps to at least ``weight``.
    """
    if weight == 0:
        return 0
    weight = min(max(weight, 1), 10000)
    # invert 1 + (b - 10) * 9999 // 990 >= weight
    blkio = BLKIO_WEIGHT_MIN + -(-(weight - 1) * 990 // 9999)
    while blkio > BLKIO_WEIGHT_MIN and blkio_weight_to_io_weight(blkio - 1) >= weight:
        blkio -= 1
    return min(blkio, BLKIO_WEIGHT_MAX)


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """The spec's memory+swap limit -> memory.swap.max (swap only); -1 is "max", 0 unset.

    Raises ValueError with runc's wording when no v2 value corresponds.
    """
    if memory == -1 and swap == 0:
        # as on v1: unlimited memory with swap unset means unlimited swap too
        return -1
    if swap in (-1, 0):
        return swap
    if memory == -1:
        return swap
    if memory == 0:
        raise ValueError("unable to set swap limit without memory limit")
    if memory < 0:
        raise ValueError(f"invalid memory value: {memory}")
    if swap < memory:
        raise ValueError("memory+swap limit should be >= memory limit")
    return swap - memory
