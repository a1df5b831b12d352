"""Device non-idealities applied to programmed cell digits and to column reads.

Cell conductances are expressed in units of one conductance step
``dG = (G_on - G_off) / (L - 1)``: an ideal cell holding digit ``d`` conducts
``d`` units. Programming (once per chip, seeded) applies, in order: finite
levels (digits rounded to the nearest of ``levels`` evenly spaced states), the
off-state conductance ``G_off / dG`` (with ``finite_on_off``), programming
variation (lognormal ``g * exp(sigma * z)`` or Gaussian ``g * (1 + sigma * z)``
clipped at 0), and stuck-at faults (stuck-on cells at the top state, stuck-off
cells at ``G_off``). Read noise perturbs every read of a column with the summed
variance of its active cells, ``sigma_r**2 * sum(x * g**2)``.
"""

from __future__ import annotations

import torch

from hwmodels.imc.config import NonIdeal


def off_units(r_on: float, r_off: float, levels: int) -> float:
    """Off-state conductance in conductance steps: ``G_off / ((G_on - G_off) / (L - 1))``."""
    g_on, g_off = 1.0 / r_on, 1.0 / r_off
    return g_off / ((g_on - g_off) / (levels - 1))


def program(digits: torch.Tensor, ni: NonIdeal, levels: int, g_off: float,
            generator: torch.Generator | None) -> torch.Tensor:
    """Conductances (in steps) of cells programmed to ``digits`` (differentiable in ``digits``)."""
    top = levels - 1
    g = digits
    if ni.levels is not None and ni.levels < levels:
        span = top / (ni.levels - 1)
        g = g + (torch.round(g.detach() / span) * span - g.detach())
    base = g_off if ni.finite_on_off else 0.0
    g = g + base
    if ni.variation > 0:
        z = torch.randn(g.shape, generator=generator, dtype=g.dtype)
        if ni.variation_model == "lognormal":
            g = g * torch.exp(ni.variation * z)
        else:
            g = (g * (1 + ni.variation * z)).clamp(min=0)
    if ni.stuck_on > 0 or ni.stuck_off > 0:
        u = torch.rand(g.shape, generator=generator, dtype=g.dtype)
        on, off = u < ni.stuck_on, (u >= ni.stuck_on) & (u < ni.stuck_on + ni.stuck_off)
        g = torch.where(on, torch.full_like(g, top + base), g)
        g = torch.where(off, torch.full_like(g, base), g)
    return g


def add_read_noise(p: torch.Tensor, p_sq: torch.Tensor, sigma: float,
                   generator: torch.Generator | None) -> torch.Tensor:
    """Column current plus Gaussian read noise of variance ``sigma**2 * p_sq``."""
    z = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)   # CPU draws on any device
    return p + sigma * p_sq.clamp(min=0).sqrt() * z
