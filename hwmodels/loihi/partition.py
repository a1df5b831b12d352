"""Core partitioning: populations split into contiguous neuron blocks, one block per core.

Per core the limits are compartments (neurons), synaptic memory (nonzero
incoming synapses x weight bits, dense synapse format), input axons (distinct
source neurons with a synapse on the core) and output axons (one per
destination core of every neuron on the core). For each population the
largest block size that meets the first three is found by bisection; blocks
are then halved while the output axons overflow, from the last population to
the first. The counts come from :mod:`hwmodels.loihi.wiring`, which never lists
synapses one by one. Cores are numbered in
population order and placed chip by chip on a mesh of tiles (``cores_per_tile``
cores share a router); a core's position gives the east-west and north-south
hops of every spike message. A population that cannot be placed even one
neuron per core, or a network that needs more cores than ``chips`` chips
offer, yields a :class:`~hwmodels.base.Violation` naming the layer and the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hwmodels.base import Violation
from hwmodels.loihi.network import INPUT, Connection, LoihiNetwork
from hwmodels.loihi.wiring import Wiring


@dataclass
class Limits:
    cores_per_chip: int
    cores_per_tile: int
    mesh_x: int
    mesh_y: int
    compartments: int
    syn_bytes: int
    in_axons: int
    out_axons: int
    chips: int


@dataclass
class Placement:
    """Where every neuron lives and what one spike of each source costs in messages and hops."""

    core_of: dict[str, np.ndarray]            # population -> core id per neuron (torch flat order)
    per_core: list[dict]                       # population, neurons, syn_bytes, in_axons, out_axons
    coords: np.ndarray                         # (cores, 2) mesh position (x east-west, y north-south)
    chips: int
    tiles: int
    fanout: dict[str, np.ndarray] = field(default_factory=dict)   # conn_key -> nonzero synapses per source neuron
    synapses: dict[str, int] = field(default_factory=dict)        # conn_key -> nonzero synapses
    messages: dict[str, np.ndarray] = field(default_factory=dict)  # source -> messages per spike, per neuron
    hops_ew: dict[str, np.ndarray] = field(default_factory=dict)
    hops_ns: dict[str, np.ndarray] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def cores(self) -> int:
        return len(self.per_core)


def place(net: LoihiNetwork, lim: Limits) -> Placement:
    """Partition and place ``net``; violations are collected, not raised."""
    wiring = {conn_key(c): Wiring(net, c) for c in net.connections}
    offsets, off = {INPUT: 0}, int(np.prod(net.input_shape))
    for p in net.populations:
        offsets[p.name] = off
        off += p.size
    violations: list[Violation] = []
    block = {p.name: _block_size(net, p.name, wiring, offsets, lim, violations) for p in net.populations}
    _fit_output_axons(net, block, wiring, lim, violations)
    placement = _assign(net, block, wiring, lim)
    allowed = lim.cores_per_chip * lim.chips
    if placement.cores > allowed:
        first = next(p.name for p in net.populations if placement.core_of[p.name].max() >= allowed)
        chips = -(-placement.cores // lim.cores_per_chip)
        violations.append(Violation(first, f"cores in total ({lim.chips} chip(s) of {lim.cores_per_chip})",
                                    placement.cores, allowed,
                                    f"{chips} chips hold it: set the option chips (--config with options: "
                                    f"{{chips: {chips}}})"))
    placement.violations = violations
    return placement


def distinct(keys: np.ndarray, space: int) -> np.ndarray:
    """``np.unique(keys)`` for non-negative integer keys below ``space``: marked in a bitmap and read
    back in order (linear time) when the key space is not much larger than the keys, sorted otherwise."""
    if space <= max(8 * len(keys), 1 << 22) and space <= 1 << 32:
        seen = np.zeros(space, dtype=bool)
        seen[keys] = True
        return np.flatnonzero(seen)
    return np.unique(keys)


def conn_key(c: Connection) -> str:
    """Unique key of a connection: owner node and target population."""
    return c.name + "->" + c.target


def _block_size(net: LoihiNetwork, name: str, wiring: dict[str, Wiring], offsets: dict, lim: Limits,
                violations: list[Violation]) -> int:
    """Largest contiguous block of neurons of ``name`` that one core can hold."""
    size = net.population(name).size
    incoming = net.incoming(name)
    bits = np.zeros(size)
    for c in incoming:
        bits += wiring[conn_key(c)].fan_in * c.num_weight_bits
    shared = len({c.source for c in incoming}) < len(incoming)   # one source on several paths

    def usage(k: int) -> tuple[float, int]:
        chunk = np.arange(size) // k
        mem = np.bincount(chunk, weights=bits).max() / 8
        if not incoming:
            return mem, 0
        if not shared:   # each connection's block sources are distinct, and so are the sources
            return mem, int(np.sum([wiring[conn_key(c)].block_counts(k) for c in incoming], axis=0).max())
        n = max(offsets[c.source] + wiring[conn_key(c)].n_src for c in incoming)
        keys = []
        for c in incoming:
            blk, src = wiring[conn_key(c)].block_sources(k)
            keys.append(blk.astype(np.int64) * n + src + offsets[c.source])
        uniq = distinct(np.concatenate(keys), (size // k + 1) * n)
        return mem, int(np.bincount(uniq // n).max())

    mem1 = bits.max(initial=0) / 8
    ax1 = int(np.sum([wiring[conn_key(c)].fan_in for c in incoming], axis=0).max(initial=0)) if incoming else 0
    if ax1 > lim.in_axons and shared:
        ax1 = usage(1)[1]
    if mem1 > lim.syn_bytes:
        violations.append(Violation(name, "bytes of synaptic memory per core (one neuron)", mem1, lim.syn_bytes))
        return 1
    if ax1 > lim.in_axons:
        violations.append(Violation(name, "input axons per core (one neuron)", ax1, lim.in_axons))
        return 1
    lo, hi = 1, min(size, lim.compartments)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        mem, ax = usage(mid)
        if mem <= lim.syn_bytes and ax <= lim.in_axons:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _first_cores(net: LoihiNetwork, block: dict[str, int]) -> dict[str, int]:
    """Number of each population's first core (cores are numbered in population order)."""
    first, n = {}, 0
    for p in net.populations:
        first[p.name], n = n, n + -(-p.size // block[p.name])
    return first


def _spike_targets(net: LoihiNetwork, source: str, block: dict[str, int], wiring: dict[str, Wiring],
                   first: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(source neuron, destination core) of every distinct pair: where a spike of each neuron goes."""
    outs = net.outgoing(source)
    pairs = [wiring[conn_key(c)].block_sources(block[c.target]) for c in outs]
    src = np.concatenate([s for _, s in pairs])
    core = np.concatenate([first[c.target] + blk for c, (blk, _) in zip(outs, pairs, strict=True)])
    targets = [c.target for c in outs]
    if len(set(targets)) < len(targets):    # two paths into one population can reach the same core
        n_cores = int(core.max()) + 1
        key = distinct(src.astype(np.int64) * n_cores + core, int(np.prod(net.shape_of(source))) * n_cores)
        src, core = key // n_cores, key % n_cores
    return src, core


def _fit_output_axons(net: LoihiNetwork, block: dict[str, int], wiring: dict[str, Wiring], lim: Limits,
                      violations: list[Violation]) -> None:
    """Halve each population's block until its cores' output axons (one per destination core of each
    neuron) fit. A population's destinations depend only on the blocks of the populations it feeds, so
    going from the last population to the first settles each one once (a population feeding itself is
    re-counted after every halving)."""
    found = []
    for p in reversed(net.populations):
        if not net.outgoing(p.name):
            continue
        while True:
            src, _ = _spike_targets(net, p.name, block, wiring, _first_cores(net, block))
            need = int(np.bincount(np.arange(p.size) // block[p.name], weights=np.bincount(src, minlength=p.size)).max())
            if need <= lim.out_axons:
                break
            if block[p.name] == 1:
                found.append(Violation(p.name, "output axons per core", need, lim.out_axons))
                break
            block[p.name] //= 2
    violations.extend(reversed(found))


def _assign(net: LoihiNetwork, block: dict[str, int], wiring: dict[str, Wiring], lim: Limits) -> Placement:
    core_of, per_core, next_core, first = {}, [], 0, _first_cores(net, block)
    for p in net.populations:
        chunk = np.arange(p.size) // block[p.name]
        core_of[p.name] = next_core + chunk
        per_core += [{"population": p.name, "neurons": int(n), "syn_bytes": 0.0, "in_axons": 0, "out_axons": 0}
                     for n in np.bincount(chunk)]
        next_core += int(chunk.max()) + 1
    coords = _coords(next_core, lim)
    pl = Placement(core_of=core_of, per_core=per_core, coords=coords,
                   chips=int(np.ceil(next_core / lim.cores_per_chip)),
                   tiles=int(np.ceil(next_core / lim.cores_per_tile)))
    syn_bytes, in_axons, out_axons = np.zeros(next_core), np.zeros(next_core, np.int64), np.zeros(next_core, np.int64)
    for c in net.connections:
        wi = wiring[conn_key(c)]
        pl.fanout[conn_key(c)] = wi.fan_out.astype(np.float64)
        pl.synapses[conn_key(c)] = wi.synapses
        syn_bytes += np.bincount(core_of[c.target], weights=wi.fan_in, minlength=next_core) * c.num_weight_bits / 8
    for source in dict.fromkeys(c.source for c in net.connections):
        n_src = int(np.prod(net.shape_of(source)))
        sd = _spike_targets(net, source, block, wiring, first)
        for c in net.outgoing(source):
            wiring[conn_key(c)].release()
        in_axons += np.bincount(sd[1], minlength=next_core)             # one axon per source neuron and core
        pl.messages[source] = np.bincount(sd[0], minlength=n_src).astype(np.float64)
        if source == INPUT:   # injected by the host next to its cores: no mesh hops counted
            pl.hops_ew[source] = pl.hops_ns[source] = np.zeros(n_src)
            continue
        home = coords[core_of[source][sd[0]]]
        d = np.abs(coords[sd[1]] - home)
        pl.hops_ew[source] = np.bincount(sd[0], weights=d[:, 0], minlength=n_src)
        pl.hops_ns[source] = np.bincount(sd[0], weights=d[:, 1], minlength=n_src)
        out_axons += np.bincount(core_of[source][sd[0]], minlength=next_core)
    for i, pc in enumerate(per_core):
        pc.update(syn_bytes=float(syn_bytes[i]), in_axons=int(in_axons[i]), out_axons=int(out_axons[i]))
    return pl


def _coords(n_cores: int, lim: Limits) -> np.ndarray:
    c = np.arange(n_cores)
    chip, local = c // lim.cores_per_chip, c % lim.cores_per_chip
    tile = local // lim.cores_per_tile
    x = tile % lim.mesh_x + chip * lim.mesh_x     # chips side by side, east-west
    y = (tile // lim.mesh_x) % lim.mesh_y
    return np.stack([x, y], axis=1)
