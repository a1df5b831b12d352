"""Loihi 1 / Loihi 2 targets through Lava (``--target loihi`` / ``--target loihi2``).

Pipeline: :mod:`.lower` (graph -> populations and connections),
:mod:`.fixed_point` (Lava's integer formats, per-layer quantization error),
:mod:`.partition` (cores, chips, axons, synaptic memory), :mod:`.reference`
(vectorized bit-exact model of Lava's fixed-point processes),
:mod:`.lava_backend` (the same network as real Lava processes),
:mod:`.activity` and :mod:`.cost` (counters, energy, latency), :mod:`.netx`
(lava-dl netx HDF5 export and reader). Lava is imported only by
:mod:`.lava_backend`, when it runs.
"""

from hwmodels.loihi.target import Loihi1Target, Loihi2Target, LoihiMapping

__all__ = ["Loihi1Target", "Loihi2Target", "LoihiMapping"]
