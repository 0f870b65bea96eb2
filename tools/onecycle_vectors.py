#!/usr/bin/env python3
"""Learning rate and beta1 of PyTorch's OneCycleLR at every step, for tests/schedule.rs.

Writes fixtures/onecycle_torch.json: for several total step counts, the (lr, beta1) that
torch.optim.lr_scheduler.OneCycleLR hands an AdamW optimizer at each optimizer step, with
SPEC section 4's settings (max_lr 1e-4, pct_start 0.15, div_factor 10, final_div_factor 1e4,
cosine annealing, two phases, beta1 cycled between 0.85 and 0.95).
Needs torch (any build; CPU is enough):  python tools/onecycle_vectors.py
"""
import json
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def trace(total):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-4, total_steps=total, pct_start=0.15, anneal_strategy="cos",
        cycle_momentum=True, base_momentum=0.85, max_momentum=0.95, div_factor=10.0,
        final_div_factor=1e4, three_phase=False)
    lr, beta1 = [], []
    for step in range(total):
        g = opt.param_groups[0]
        lr.append(float(g["lr"]))
        beta1.append(float(g["betas"][0]))
        opt.step()
        if step + 1 < total:  # stepping past total_steps raises in PyTorch
            sched.step()
    return {"total": total, "lr": lr, "beta1": beta1}


def main():
    out = {"source": f"torch {torch.__version__} OneCycleLR",
           "traces": [trace(t) for t in [1, 2, 5, 7, 20, 100, 333, 1000]]}
    with open(os.path.join(ROOT, "fixtures", "onecycle_torch.json"), "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
