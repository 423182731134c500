"""The causal-LM fine-tuning loop shared by the fixture builders (adapters, RWS fine-tunes).

One loop, so every fixture is trained the same way: random windows of `seq` tokens drawn with a seeded
generator (runs are reproducible and independent of torch's global RNG), AdamW without weight decay,
loss = the model's own shifted cross-entropy. Returns what the callers report.
"""
import time

import torch


def train_lm(model, params, ids, steps, lr, seed, seq=128, batch=8, log_every=0, tag=""):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    t0, ema = time.time(), None
    for step in range(steps):
        starts = torch.randint(0, len(ids) - seq - 1, (batch,), generator=gen)
        x = torch.stack([ids[s:s + seq] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if log_every and step % log_every == 0:
            print(f"  [{tag}] step {step} loss(ema) {ema:.3f} {time.time() - t0:.0f}s", flush=True)
    model.eval()
    seconds = time.time() - t0
    print(f"  {tag + ': ' if tag else ''}{steps} steps, {seconds:.0f}s, loss(ema) {ema:.3f}", flush=True)
    return seconds, ema
