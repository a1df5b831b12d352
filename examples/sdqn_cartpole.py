"""PL-SDQN on CartPole-v1: train a spiking Q-network directly (PBLN), freeze it for deployment,
record observations, and compile it on digital, imc and loihi (energy and latency per decision).

Stages (each skipped when its output exists, unless ``--retrain``):

1. train with per-sample PBLN statistics (double DQN) until the greedy policy averages
   >= 475 over 100 episodes;
2. freeze the PBLN statistics at their averages over the policy's own observations and
   check the frozen policy on 100 episodes; if it falls below 475, recover it in the frozen
   form (``--tune distill``: policy distillation from the layer-PBLN network with DAgger;
   ``--tune dqn``: DQN fine-tuning); write the frozen form as a native checkpoint (plain LIF
   layers);
3. record the greedy policy's observations (``obs.npz``: ``x`` = network inputs, ``y`` =
   actions) and run ``deploy.compile`` on each target with ``data=None`` and with obs.npz;
4. with ``--imc``: distill the deployable policy into its form on the 1-bit crossbar
   (:func:`distill_imc`), written as ``cartpole_pl_sdqn_imc.pt``.

    python examples/sdqn_cartpole.py --seed 1 --lr 5e-4 --steps 10000 --retrain   # the shipped model, ~3 min
    python examples/sdqn_cartpole.py --compile-only   # stage 3 on the shipped model
    python examples/sdqn_cartpole.py --returns-only --out r.json   # the 100-episode returns alone
    python examples/sdqn_cartpole.py --compile-only --imc   # + stage 4: the policy distilled for imc
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from deploy.io.atomic import write_text
from deploy.training.rl import dqn
from deploy.training.rl.distill import DistillConfig
from deploy.training.rl.recipe import TUNERS, train_pl_sdqn
from deploy.training.rl.sdqn import save

HERE = Path(__file__).resolve().parent
MODEL = HERE / "models" / "cartpole_pl_sdqn.pt"
OBS = HERE / "models" / "cartpole_obs.npz"
TARGETS = ("digital", "imc", "loihi")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_model(seed: int, steps: int, lr: float = 1e-3, finetune_steps: int | None = None,
                tune: str = "distill", distill_rounds: int = DistillConfig.rounds) -> dict:
    """Stages 1-2 (:func:`deploy.training.rl.recipe.train_pl_sdqn`): returns what was measured and writes MODEL."""
    net, info = train_pl_sdqn(seed, steps, lr, log=log, eval_every=1_250, eval_episodes=5,
                              finetune_steps=finetune_steps, tune=tune,
                              distill_cfg=DistillConfig(rounds=distill_rounds, seed=seed))
    save(net, MODEL, meta=info)
    return info


def _policy(graph) -> dqn.Policy:
    """The greedy policy of ``graph`` run in float."""
    from deploy.core.net import SpikingNet
    from deploy.training.rl.distill import NetQ

    return dqn.greedy(NetQ(SpikingNet(graph).eval(), 2))


def returns() -> dict:
    """Average return over the 100 reported episodes of the shipped checkpoint and its spike-readout variant."""
    from deploy.io import native

    spiking = MODEL.with_name(MODEL.stem + "_spike_readout.pt")
    out = {"return_ir_float_100": float(np.mean(dqn.evaluate(_policy(native.load(MODEL)), 100))),
           "return_spike_readout_100": float(np.mean(dqn.evaluate(_policy(native.load(spiking)), 100)))}
    imc = MODEL.with_name(MODEL.stem + "_imc.pt")
    if imc.exists():
        out["return_imc_100"] = float(np.mean(imc_returns(native.load(imc))))
    return out


def imc_returns(graph) -> list[float]:
    """Returns of the 100 reported episodes played by ``graph`` on the ``imc`` simulator."""
    from deploy.training.rl.distill import NetQ
    from hwmodels.imc import ImcTarget

    tgt = ImcTarget()
    return dqn.evaluate(dqn.greedy(NetQ(tgt.network(tgt.map(graph)), 2)), 100)


def compile_all(samples: int) -> dict:
    """Stage 3: the checkpoint on every target, assumed-rate and on recorded observations. Loihi
    reads decisions from spike counts, so it gets the spike-readout variant (its return measured too)."""
    from deploy.io import native
    from deploy.pipeline import compile as deploy_compile
    from deploy.training.rl.sdqn import spiking_readout

    graph = native.load(MODEL)
    doc_meta = native.read_checkpoint(MODEL).get("meta", {})
    spiking = MODEL.with_name(MODEL.stem + "_spike_readout.pt")
    native.save(spiking_readout(graph), spiking, meta={**doc_meta, "q_readout": "spike counts of IF neurons "
                                                        "on the action-centred Q-current; action = argmax"})
    policy = _policy(graph)
    rows = {**returns(), "targets": {}}
    seen: list[np.ndarray] = []
    dqn.evaluate(policy, 3, seed=30_000, record=seen)
    x = torch.from_numpy(np.stack(seen)[:samples])
    np.savez(OBS, x=x.numpy(), y=policy(x).numpy())
    rows["obs_samples"] = len(x)
    log(f"returns over 100 episodes: LI readout {rows['return_ir_float_100']:.1f}, "
        f"spike readout {rows['return_spike_readout_100']:.1f}")
    for target, model in (("digital", MODEL), ("imc", MODEL), ("loihi", MODEL), ("loihi", spiking)):
        row = {}
        for data in (None, str(OBS)):
            try:
                rep = deploy_compile(str(model), target=target, data=data)
            except Exception as exc:  # noqa: BLE001 - a target that cannot run the model says why
                row["data" if data else "none"] = {"error": str(exc).splitlines()[0]}
                continue
            t = rep.totals
            row["data" if data else "none"] = {
                "energy_j": t.energy_j, "latency_s": t.latency_s, "spikes": t.spikes,
                "action_agreement": rep.accuracy.deployed if rep.accuracy else None}
        key = target + ("" if model == MODEL else " (spike readout)")
        rows["targets"][key] = row
        log(f"{key}: {row}")
    return rows


def distill_imc(rounds: int, updates: int, lr: float) -> dict:
    """Stage 4: the deployable policy distilled into its ``imc`` form. The float graph is the
    teacher; the student is the graph on the 1-bit crossbar (the target's trainable forward,
    conversion steps calibrated on the teacher's states), trained by DAgger policy distillation
    and kept by its greedy return on the selection seeds; written beside MODEL as ``*_imc.pt``,
    its return measured on the ``imc`` simulator itself over the 100 reported episodes."""
    from deploy.core.net import SpikingNet
    from deploy.io import native
    from deploy.pipeline import compile as deploy_compile
    from deploy.training.rl.distill import DistillConfig, NetQ, distill
    from hwmodels.imc import ImcTarget

    graph = native.load(MODEL)
    float_net = SpikingNet(graph).eval()

    def teacher(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return float_net.logits(float_net(x))

    tgt = ImcTarget()
    net = tgt.trainable(graph, noise=False, learn_steps=True, learn_scales=True)
    net.set_resolution(tgt.config.adc_bits)
    net.eval()
    seen: list[np.ndarray] = []
    dqn.evaluate(lambda x: teacher(x).argmax(-1), 5, seed=60_000, record=seen)   # calibration states
    with torch.no_grad():
        net.calibrate(torch.from_numpy(np.stack(seen)))
    naive = float(np.mean(imc_returns(graph)))
    res = distill(teacher, NetQ(net, 2), DistillConfig(rounds=rounds, updates=updates, lr=lr), log=log)
    tuned = tgt.export_trained(net)
    returns = imc_returns(tuned)
    info = {"imc_return_naive_100": naive, "imc_return_100": float(np.mean(returns)),
            "imc_return_min": float(np.min(returns)), "selection_return": res.best_return,
            "distill": {"rounds": rounds, "updates": updates, "lr": lr, "states": res.states}}
    path = MODEL.with_name(MODEL.stem + "_imc.pt")
    doc_meta = native.read_checkpoint(MODEL).get("meta", {})
    native.save(tuned, path, meta={**doc_meta, "finetuned_for": "imc", "imc_distillation": info})
    rep = deploy_compile(str(path), target="imc", data=str(OBS))
    info["compile"] = {"energy_j": rep.totals.energy_j, "latency_s": rep.totals.latency_s,
                       "spikes": rep.totals.spikes, "action_agreement": rep.accuracy.deployed}
    log(f"imc: return {naive:.1f} naive -> {info['imc_return_100']:.1f} distilled (100 episodes on the imc "
        f"simulator); {info['compile']} -> {path}")
    return info


def main() -> None:
    global MODEL, OBS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--samples", type=int, default=512, help="recorded observations compiled")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tune", choices=TUNERS, default="distill",
                    help="recovery of a frozen form below 475: DAgger policy distillation, DQN or none")
    ap.add_argument("--distill-rounds", type=int, default=DistillConfig.rounds, help="DAgger rounds (--tune distill)")
    ap.add_argument("--finetune-steps", type=int, default=None, help="--tune dqn: fine-tuning steps (default steps/2)")
    ap.add_argument("--model", type=Path, default=MODEL,
                    help="checkpoint written / compiled (its spike-readout variant and cartpole_obs.npz beside it)")
    ap.add_argument("--retrain", action="store_true")
    ap.add_argument("--compile-only", action="store_true")
    ap.add_argument("--returns-only", action="store_true", help="only the 100-episode returns of the checkpoints")
    ap.add_argument("--imc", action="store_true", help="stage 4: distill the deployable policy into its imc form")
    ap.add_argument("--imc-rounds", type=int, default=8, help="--imc: DAgger rounds")
    ap.add_argument("--imc-updates", type=int, default=400, help="--imc: gradient steps per round")
    ap.add_argument("--imc-lr", type=float, default=1e-4, help="--imc: learning rate")
    ap.add_argument("--out", type=Path, default=Path("sdqn_results.json"))
    args = ap.parse_args()
    if args.distill_rounds < 1:
        ap.error("--distill-rounds must be at least 1")
    torch.set_num_threads(1)
    MODEL = args.model
    OBS = MODEL.with_name(OBS.name)                      # the recorded observations sit beside the model
    results = {}
    if args.returns_only:
        results = returns()
        write_text(args.out, json.dumps(results, indent=1))
        log(f"{results} -> {args.out}")
        return
    if not args.compile_only and (args.retrain or not MODEL.exists()):
        results["train"] = train_model(args.seed, args.steps, args.lr, args.finetune_steps, args.tune,
                                       args.distill_rounds)
    results["compile"] = compile_all(args.samples)
    if args.imc:
        results["imc"] = distill_imc(args.imc_rounds, args.imc_updates, args.imc_lr)
    write_text(args.out, json.dumps(results, indent=1))
    log(f"-> {args.out}")


if __name__ == "__main__":
    main()
