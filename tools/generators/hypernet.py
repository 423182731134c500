"""The HY-WU-style generator trained by train_generator.py, and how its factors ride the frozen GPT-2.

Condition path (what Patchbay reproduces in TypeScript for a string condition):
    e = mean_t wte[t]                  t = tokenizer.encode(text.upper()), wte [vocab, 256] of the base
    c = P·e                            P [d_c, 256]  (condition_projection.safetensors, tensor `weight`)
A vector condition is c itself ([d_c] numbers).

Generator (exported to ONNX, input `condition` [1, d_c]):
    h = tanh(W_h·c + b_h)              [H]
    A_m = reshape(W_Am·h + b_Am)       [r, d_in]    per target module m
    B_m = reshape(W_Bm·h + b_Bm)       [d_out, r]
so ΔW_m(c) = s·B_m(c)·A_m(c), applied exactly like a PEFT LoRA: y += s·(x·A_mᵀ)·B_mᵀ.
The biases b_Am, b_Bm are a condition-independent LoRA; W_Am, W_Bm make it depend on c. B starts at zero
(like LoRA's B), so training starts from the base model.
"""
import torch
import torch.nn as nn


class Generator(nn.Module):
    def __init__(self, cond_dim, hidden, rank, shapes):
        """shapes: ordered {module: (d_in, d_out)}."""
        super().__init__()
        self.rank = rank
        self.modules_ = list(shapes)
        self.shapes = dict(shapes)
        self.hidden = nn.Linear(cond_dim, hidden)
        self.heads_a = nn.ModuleList()
        self.heads_b = nn.ModuleList()
        for m in self.modules_:
            d_in, d_out = self.shapes[m]
            a = nn.Linear(hidden, rank * d_in)
            b = nn.Linear(hidden, d_out * rank)
            nn.init.normal_(a.weight, std=(1.0 / d_in) ** 0.5 / hidden ** 0.5)
            nn.init.normal_(a.bias, std=(1.0 / d_in) ** 0.5)
            nn.init.zeros_(b.weight)
            nn.init.zeros_(b.bias)
            self.heads_a.append(a)
            self.heads_b.append(b)

    def forward(self, condition):
        """condition [n, d_c] → flat tuple (A_0, B_0, A_1, B_1, …), A [n, r, d_in], B [n, d_out, r]."""
        h = torch.tanh(self.hidden(condition))
        out = []
        for m, a, b in zip(self.modules_, self.heads_a, self.heads_b):
            d_in, d_out = self.shapes[m]
            out.append(a(h).reshape(-1, self.rank, d_in))
            out.append(b(h).reshape(-1, d_out, self.rank))
        return tuple(out)

    def factors(self, condition):
        flat = self.forward(condition)
        return {m: (flat[2 * i], flat[2 * i + 1]) for i, m in enumerate(self.modules_)}


class OnnxGenerator(nn.Module):
    """What is exported: one condition [1, d_c], outputs `<module>.A` [r, d_in] and `<module>.B` [d_out, r]."""

    def __init__(self, gen):
        super().__init__()
        self.gen = gen

    def forward(self, condition):
        return tuple(t[0] for t in self.gen(condition))


class StringCondition(nn.Module):
    """c = P·mean(wte[tokens]); wte is the frozen base embedding, P is learned with the generator."""

    def __init__(self, wte, cond_dim):
        super().__init__()
        self.register_buffer("wte", wte.detach().clone())
        self.proj = nn.Linear(wte.shape[1], cond_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=wte.shape[1] ** -0.5 * 4)

    def mean_embedding(self, ids):
        return self.wte[torch.tensor(ids, dtype=torch.long)].mean(0)

    def forward(self, ids):
        return self.proj(self.mean_embedding(ids))


class RowLora:
    """Forward hooks on the HF GPT-2 Conv1D modules: row b of the batch gets y += s·(x_b·A_bᵀ)·B_bᵀ."""

    def __init__(self, model, modules, scale):
        self.scale = scale
        self.factors = None
        named = dict(model.named_modules())
        self.handles = [named[m].register_forward_hook(self._hook(m)) for m in modules]

    def _hook(self, name):
        def hook(_mod, inputs, out):
            if self.factors is None or name not in self.factors:
                return out
            A, B = self.factors[name]  # [n, r, d_in], [n, d_out, r]
            x = inputs[0]
            return out + self.scale * torch.bmm(torch.bmm(x, A.transpose(1, 2)), B.transpose(1, 2))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()
