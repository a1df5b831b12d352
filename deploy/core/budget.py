"""Memory budget: estimate what a run will allocate and refuse it before it starts.

:func:`estimate_bytes` sizes the large buffers of a run from the graph alone: the
per-batch activations a simulation records (every layer's output for every
timestep), the target's mapping structures (Loihi's per-synapse tables, the
IMC fan-out pass) and, for synthetic event data, the input itself. The figures
per value are measured peaks (``deploy compile`` on the shipped digits models,
T = 64, batch 256, and DVSNet: 7-8 bytes per recorded float on digital and IMC,
13 on Loihi, plus on IMC about 80 bytes per output and step of a layer reading
analog inputs as bit-planes) rounded up, so the estimate errs high. :func:`check_budget` raises
:class:`MemoryBudgetError` when the estimate exceeds the limit: ``--max-memory``
(:func:`limit`), by default half of the machine's RAM (:func:`default_limit`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

from deploy.core import ir
from deploy.core.errors import DeployError

#: share of the machine's RAM a run may use unless --max-memory says otherwise
DEFAULT_FRACTION = 0.5
#: bytes per recorded activation value (one sample, one timestep) in a simulation, by target family
SIM_BYTES_PER_VALUE = {"digital": 10, "loihi": 20, "imc": 10}
#: IMC layers fed non-spike (analog) inputs read one bit-plane at a time: bytes per output and plane
IMC_BYTES_PER_PLANE_OUTPUT, IMC_PLANES = 12, 8
#: bytes per synapse of Loihi's mapping tables (source and target index, int64) and per neuron
LOIHI_BYTES_PER_SYNAPSE, LOIHI_BYTES_PER_NEURON = 16, 64
#: the IMC fan-out pass holds a layer's input and output (float32) with their gradients
IMC_FANOUT_BYTES_PER_VALUE = 12

_LIMIT: ContextVar[int | None] = ContextVar("max_memory", default=None)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}


class MemoryBudgetError(DeployError):
    """A run would need more memory than the limit allows."""


@dataclass
class Estimate:
    """Bytes a run needs, by part (``simulation``, ``mapping``, ``data``), and what it assumed."""

    parts: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return float(sum(self.parts.values()))

    def __add__(self, other: Estimate) -> Estimate:
        parts = dict(self.parts)
        for k, v in other.parts.items():
            parts[k] = max(parts.get(k, 0.0), v)   # parts of two targets run one after the other
        return Estimate(parts, {**self.notes, **other.notes})


def human(n: float) -> str:
    """Bytes in binary units: ``191.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def parse_size(text: str | int | float) -> int:
    """``"8G"``, ``"512MiB"``, ``"2.5 GB"`` or a byte count as bytes (binary units, 1 G = 2**30)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
        if m is None:
            raise DeployError(f"--max-memory must be a size such as 8G, 512M or 1073741824, got {text!r}")
        value, unit = float(m[1]), m[2].lower()
    size = value * _UNITS[unit]
    if not math.isfinite(size) or size < 1:
        raise DeployError(f"--max-memory must be a positive size, got {text!r}")
    return int(size)


def machine_ram() -> int:
    """Physical RAM in bytes (or a smaller cgroup memory limit), from sysconf or /proc/meminfo."""
    ram = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if ram <= 0:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemTotal:"):
                    ram = int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError):
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap.isdigit() and 0 < int(cap) < (ram or math.inf):
            ram = int(cap)
    return ram or 8 * 1024 ** 3


def default_limit() -> int:
    """:data:`DEFAULT_FRACTION` of :func:`machine_ram`."""
    return int(machine_ram() * DEFAULT_FRACTION)


def current_limit() -> int:
    """The limit in force: the innermost :func:`limit`, else :func:`default_limit`."""
    value = _LIMIT.get()
    return default_limit() if value is None else value


@contextlib.contextmanager
def limit(max_bytes: int | str | None) -> Iterator[None]:
    """Run a block with ``max_bytes`` (bytes or a size string; None = the default) as the limit."""
    token = _LIMIT.set(None if max_bytes is None else parse_size(max_bytes))
    try:
        yield
    finally:
        _LIMIT.reset(token)


def _family(target: str) -> str:
    return "loihi" if target.startswith("loihi") or target == "netx" else "imc" if target.startswith("imc") \
        else "digital"


def estimate_bytes(graph: ir.Graph, batch: int, timesteps: int | None = None, target: str = "digital",
                   data_samples: int = 0) -> Estimate:
    """Bytes a run of ``graph`` on ``target`` needs: simulating ``batch`` samples at a time for
    ``timesteps`` (default the graph's) steps, mapping it, and ``data_samples`` event samples
    generated in full (synthetic event data)."""
    steps = int(timesteps or graph.timesteps)
    shapes = graph.shapes()
    size = {k: math.prod(v) for k, v in shapes.items()}
    family = _family(target)
    est = Estimate()
    if batch > 0:
        values = sum(size.values()) + max(size.values())
        per_step = SIM_BYTES_PER_VALUE[family] * values
        if family == "imc":
            per_step += IMC_BYTES_PER_PLANE_OUTPUT * IMC_PLANES * sum(
                size[n.name] for n in graph.synapses() if not _spikes_in(graph, n.inputs[0]))
        est.parts["simulation"] = float(per_step) * batch * steps
        est.notes["simulation"] = f"{batch} samples x {steps} timesteps x {values:,} values on {target}"
    if family == "loihi":
        synapses = sum(_synapses(n, shapes) for n in graph.synapses())
        neurons = sum(size[n.name] for n in graph.nodes if n.kind in ir.NEURON_KINDS)
        est.parts["mapping"] = float(LOIHI_BYTES_PER_SYNAPSE * synapses + LOIHI_BYTES_PER_NEURON * neurons)
        est.notes["mapping"] = f"{synapses:,} synapses and {neurons:,} neurons to place"
    elif family == "imc":
        biggest = max((size[n.inputs[0]] + size[n.name] for n in graph.synapses()), default=0)
        est.parts["mapping"] = float(IMC_FANOUT_BYTES_PER_VALUE * biggest)
        est.notes["mapping"] = f"crossbar fan-out of a layer with {biggest:,} inputs and outputs"
    if data_samples > 0:
        est.parts["data"] = 4.0 * data_samples * steps * size["input"]
        est.notes["data"] = f"{data_samples} event samples x {steps} timesteps x {size['input']:,} inputs"
    return est


def _spikes_in(graph: ir.Graph, name: str) -> bool:
    """True when ``name`` carries spikes (a lif output, possibly flattened or max-pooled); False for the network
    input of a direct-encoded model, pooled or summed values, which an IMC array reads as bit-planes."""
    while name != "input" and (graph[name].kind == "flatten" or getattr(graph[name], "mode", "") == "max"):
        name = graph[name].inputs[0]
    return graph.encoding != "direct" if name == "input" else graph[name].kind == "lif"


def _synapses(node: ir.Node, shapes: dict[str, tuple[int, ...]]) -> int:
    """Weighted connections a synaptic layer makes (one per weight use)."""
    w = node.weight
    if node.kind == "conv2d":
        return math.prod(shapes[node.name]) * math.prod(w.shape[1:])
    return math.prod(w.shape)


def check_budget(estimate: Estimate | float, what: str = "this run", max_bytes: int | None = None,
                 hint: str | None = None) -> None:
    """Raise :class:`MemoryBudgetError` when ``estimate`` exceeds ``max_bytes`` (default the
    :func:`current_limit`), naming the estimate, its largest part, the limit and ``hint`` (default:
    the options that shrink that part)."""
    est = estimate if isinstance(estimate, Estimate) else Estimate({"allocation": float(estimate)})
    cap = current_limit() if max_bytes is None else int(max_bytes)
    if est.total <= cap:
        return
    part = max(est.parts, key=est.parts.get)
    detail = f"{part} {human(est.parts[part])}" + (f": {est.notes[part]}" if part in est.notes else "")
    if hint is None:
        hint = {"simulation": "lower --batch-size or --timesteps", "data": "lower --samples or --timesteps"}.get(part)
    source = ("--max-memory" if _LIMIT.get() is not None or max_bytes is not None
              else f"half of this machine's {human(machine_ram())} RAM; raise it with --max-memory")
    raise MemoryBudgetError(f"{what} needs about {human(est.total)} of memory ({detail}), more than the "
                            f"limit of {human(cap)} ({source}){'; ' + hint if hint else ''}")
