"""Export a mapped network in lava-dl's netx HDF5 layout, and read it back.

Layout written (datasets only, no attributes, groups ``/layer/<i>`` by index):

- ``/simulation/Ts`` = 1, ``/simulation/tSample`` = timesteps;
- ``/layer/0``: ``type`` = ``input`` and ``shape`` (C, H, W) of the model input,
  plus ``inputScale`` and ``encoding`` (ignored by netx) describing the input
  messages ``x_q = round(x * inputScale)`` (direct encoding) or spikes. It has no
  ``neuron``: our mapping sends the input straight to the first synaptic layer,
  and a Lava LIF cannot relay graded values. netx then builds layer 1 as its
  first block and wires ``Network.inp`` to its synapse, so a user feeds ``x_q``
  to ``Network.inp`` (graded input: ``Network(net_config=path,
  input_message_bits=8)``, any value > 0);
- a ``flatten`` layer before a dense layer whose input is 3-D (netx then
  transposes and flattens to torch C-H-W order, the order of our dense columns);
- ``dense``: ``shape``, ``inFeatures``, ``outFeatures``, ``weight`` (out, in),
  ``bias`` (per neuron); ``conv``: ``shape`` (C, H, W), ``inChannels``,
  ``outChannels``, ``kernelSize``, ``stride``, ``padding``, ``dilation`` (H, W),
  ``groups``, ``weight`` (out, in/groups, kH, kW), ``bias`` (per channel);
- ``neuron``: ``type`` = ``CUBA``, ``iDecay`` = du + 1, ``vDecay`` = dv,
  ``vThMant`` = vth, ``refDelay`` = 1, ``gradedSpike`` = 0.

Weights are the integers each spike adds to ``a_in``, stored as float32
(conv kernels carry their exponent, as netx passes conv weights to Lava's
Conv unchanged). netx builds every LIF with ``bias_exp = 6`` and re-derives a
dense layer's ``weight_exp`` and ``num_weight_bits`` from the stored integers
(:func:`netx_weight_bits` mirrors lava-dl's ``optimize_weight_bits``): what it
computes is ``a_in = sum(w * s)`` with no shift of the sum, so only mappings with
``bias_exp = 6`` and dense ``weight_exp = 0`` export exactly: map with option
``netx=True`` (``deploy netx`` does). :func:`check_exportable` also checks that
netx's re-derivation gives back every stored weight. netx has no residual (add)
blocks and no synaptic delays, and turns biases on at step 0 (our mapping
switches a layer's bias on with its first input): run the reference with
``timing="netx"`` to get netx's spikes; :func:`read` restores our timing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploy.core.errors import TargetError
from deploy.io.atomic import atomic_write
from hwmodels.loihi.network import (
    INPUT,
    Connection,
    LoihiNetwork,
    Population,
    lava_dense_weights,
    sign_mode_of,
)

NETX_BIAS_EXP = 6


def netx_weight_bits(weight: np.ndarray) -> tuple[np.ndarray, int, int]:
    """What lava-dl 0.6's ``optimize_weight_bits`` makes of stored dense weights:
    ``(weights handed to Lava's Dense, num_weight_bits, weight_exp)``.

    netx clips mixed-sign weights to [-256, 254], shifts them left by
    ``scale_bits`` to fill 8 bits and sets ``weight_exp = -scale_bits``; the
    Dense then derives its sign mode from the shifted weights.
    """
    w = np.asarray(weight).astype(np.int64)
    if w.size == 0:
        raise TargetError("netx cannot store an empty dense weight matrix")
    hi, lo = int(w.max()), int(w.min())
    if (hi > 254 and lo < 0) or (lo < -256 and hi > 0):
        w = np.clip(w, -256, 254)
        hi, lo = int(w.max()), int(w.min())
    signed = int(hi >= 0 and lo < 0)
    if signed:
        scale = min(127 / hi if hi else np.inf, -128 / lo)
    elif hi < 0:
        scale = -256 / lo
    else:
        scale = 255 / hi if hi else np.inf
    if not np.isfinite(scale):
        raise TargetError("netx cannot store an all-zero dense weight matrix (its optimize_weight_bits "
                          "divides by the largest weight)")
    scale_bits = int(np.floor(np.log2(scale))) + signed
    n = 8
    while n > 0 and np.any(w % (1 << n)):
        n -= 1
    n -= signed
    return np.left_shift(w, scale_bits), 8 - scale_bits - n, -scale_bits


def netx_dense_effective(weight: np.ndarray) -> np.ndarray | None:
    """Per-spike ``a_in`` contributions netx's Dense applies for stored integer
    weights, or None when its shift of the sum is not exact for them."""
    w, bits, exp = netx_weight_bits(weight)
    lava = lava_dense_weights(w, bits, sign_mode_of(w))
    if exp > 0 or np.any(lava % (1 << -exp)):
        return None
    return lava >> -exp


def check_exportable(net: LoihiNetwork) -> None:
    """Raise TargetError naming the first thing netx cannot express."""
    prev = INPUT
    for pop in net.populations:
        conns = net.incoming(pop.name)
        if any(c.source == pop.name for c in conns):
            raise TargetError(f"layer '{pop.name}': recurrent connections are not exported to netx "
                              "(its dense_rec layer is not written)")
        if len(conns) != 1 or conns[0].source != prev:
            raise TargetError(f"layer '{pop.name}': netx describes a plain chain of layers; this layer "
                              "has a residual or skip input")
        c = conns[0]
        if c.kind == "dense" and c.weight_exp != 0:
            raise TargetError(f"layer '{c.name}': dense weight exponent {c.weight_exp} cannot be stored in "
                              "netx (it re-derives the exponent from 8-bit weights); map with option netx=True")
        if c.kind == "dense":
            w = c.effective_weight()
            back = netx_dense_effective(w)
            if back is None or not np.array_equal(back, w):
                bad = int(np.argmax(np.ravel(back != w))) if back is not None else 0
                raise TargetError(f"layer '{c.name}': netx re-derives the weight format from the stored "
                                  f"integers and would change weight {np.ravel(w)[bad]} (flat index {bad}); "
                                  "this layer cannot be expressed exactly in netx")
        if pop.bias_exp != NETX_BIAS_EXP:
            raise TargetError(f"layer '{pop.name}': bias_exp {pop.bias_exp} differs from netx's fixed "
                              f"{NETX_BIAS_EXP}; map with option bias_exp=6")
        if c.kind == "conv":
            per_c = pop.bias_mant.reshape(pop.shape[0], -1)
            if np.ptp(per_c, axis=1).max(initial=0) > 0:
                raise TargetError(f"layer '{pop.name}': conv bias differs within a channel; netx stores "
                                  "one bias per channel")
        prev = pop.name


def export(net: LoihiNetwork, path: str | Path) -> Path:
    """Write ``net`` to ``path`` (atomically) in the netx layout; see the module docstring."""
    import h5py

    check_exportable(net)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f["simulation/Ts"] = 1.0
            f["simulation/tSample"] = net.timesteps
            g = f.create_group("layer/0")
            g["type"] = "input"
            g["shape"] = np.asarray(net.input_shape, np.int64)
            g["inputScale"] = net.input_scale
            g["encoding"] = net.encoding
            i = 1
            for pop in net.populations:
                c = net.incoming(pop.name)[0]
                if c.kind == "dense" and len(net.shape_of(c.source)) == 3:
                    f.create_group(f"layer/{i}")["type"] = "flatten"
                    i += 1
                _layer(f.create_group(f"layer/{i}"), net, pop, c)
                i += 1

    return atomic_write(path, write)


def _neuron(g, du: int, dv: int, vth: int) -> None:
    n = g.create_group("neuron")
    n["type"] = "CUBA"
    n["iDecay"] = du + 1
    n["vDecay"] = dv
    n["vThMant"] = vth
    n["refDelay"] = 1
    n["gradedSpike"] = 0


def _layer(g, net: LoihiNetwork, pop: Population, c: Connection) -> None:
    g["shape"] = np.asarray(pop.shape, np.int64)
    if c.kind == "dense":
        g["type"] = "dense"
        g["inFeatures"] = int(c.weight.shape[1])
        g["outFeatures"] = int(c.weight.shape[0])
        g["weight"] = c.effective_weight().astype(np.float32)
        g["bias"] = pop.bias_mant.reshape(-1).astype(np.float32)
    else:
        g["type"] = "conv"
        g["inChannels"] = int(net.shape_of(c.source)[0])
        g["outChannels"] = int(c.weight.shape[0])
        g["kernelSize"] = np.asarray(c.weight.shape[2:], np.int64)
        g["stride"] = np.asarray(c.stride, np.int64)
        g["padding"] = np.asarray(c.padding, np.int64)
        g["dilation"] = np.asarray(c.dilation, np.int64)
        g["groups"] = int(c.groups)
        g["weight"] = c.weight.astype(np.float32)
        g["bias"] = pop.bias_mant.reshape(pop.shape[0], -1)[:, 0].astype(np.float32)
    _neuron(g, pop.du, pop.dv, pop.vth)


def _text(ds) -> str:
    v = ds[()]
    return v.decode() if isinstance(v, bytes) else str(v)


def read(path: str | Path) -> LoihiNetwork:
    """Read a netx file written by :func:`export` back into a network the reference can run."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise TargetError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise TargetError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        layers = f["layer"]
        order = sorted(layers, key=int)
        first = layers[order[0]]
        if _text(first["type"]) != "input":
            raise TargetError(f"{path}: layer 0 must be the input layer")
        input_shape = tuple(int(s) for s in first["shape"][()])
        scale = int(first["inputScale"][()]) if "inputScale" in first else 1
        encoding = _text(first["encoding"]) if "encoding" in first else "rate"
        timesteps = int(f["simulation/tSample"][()])
        pops, conns, prev, prev_shape = [], [], INPUT, input_shape
        for key in order[1:]:
            g = layers[key]
            kind = _text(g["type"])
            if kind == "flatten":
                continue
            if kind not in ("dense", "conv"):
                raise TargetError(f"{path}: layer {key} has type '{kind}', which this reader does not run")
            name = f"layer{key}"
            shape = tuple(int(s) for s in g["shape"][()])
            w = np.asarray(g["weight"][()]).astype(np.int64)
            n = g["neuron"]
            if kind == "dense":     # the weight format netx derives, so the reference runs what netx runs
                bias = np.asarray(g["bias"][()]).astype(np.int64).reshape(shape)
                w, bits, exp = netx_weight_bits(w)
                conn = Connection(name, [name], prev, name, "dense", w, prev_shape, shape, weight_exp=exp,
                                  num_weight_bits=bits, sign_mode=sign_mode_of(w))
            else:
                b = np.asarray(g["bias"][()]).astype(np.int64)
                bias = np.broadcast_to(b[:, None, None], shape).copy()
                conn = Connection(name, [name], prev, name, "conv", w, prev_shape, shape,
                                  stride=tuple(int(s) for s in g["stride"][()]),
                                  padding=tuple(int(s) for s in g["padding"][()]),
                                  dilation=tuple(int(s) for s in g["dilation"][()]), groups=int(g["groups"][()]))
            conn.graded = prev == INPUT and encoding == "direct"
            pops.append(Population(name, shape, vth=int(n["vThMant"][()]), du=int(n["iDecay"][()]) - 1,
                                   dv=int(n["vDecay"][()]), bias_mant=bias, bias_exp=NETX_BIAS_EXP,
                                   start=len(pops) + 1))
            conns.append(conn)
            prev, prev_shape = name, shape
    if not pops:
        raise TargetError(f"{path}: no dense or conv layer")
    return LoihiNetwork(input_shape=input_shape, timesteps=timesteps, encoding=encoding, input_scale=scale,
                        populations=pops, connections=conns, output=pops[-1].name)
