"""PyTorch re-implementations of GPT-2 and Llama forward passes, written for ONNX export (export_onnx.py).

Module attribute names equal Hugging Face's, so the exporter's node names carry the HF module path
(`/transformer/h.0/attn/c_attn/MatMul`). Past keys/values come in and go out as flat tensors in the Optimum
layout; masking uses finfo(float32).min, never -inf. See export_onnx.py for the full graph contract.
"""
import math

import torch
import torch.nn as nn

NEG = torch.finfo(torch.float32).min

class Lin(nn.Module):
    """y = x @ weight (+ bias); weight stored [d_in, d_out] so the export is MatMul(x, initializer)."""

    def __init__(self, d_in, d_out, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(d_out)) if bias else None

    def forward(self, x):
        y = torch.matmul(x, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y


def attention(q, k_new, v_new, past_k, past_v, attention_mask, scale, n_rep, softmax_fp32=False):
    """q [B,H,S,D]; k_new/v_new [B,KV,S,D]; past [B,KV,P,D]; mask [B,P+S]. Returns (ctx [B,S,H*D], k, v)."""
    k = torch.cat([past_k, k_new], dim=2)
    v = torch.cat([past_v, v_new], dim=2)
    if n_rep > 1:
        b, kv, t, d = k.shape
        kr = k[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)
        vr = v[:, :, None, :, :].expand(b, kv, n_rep, t, d).reshape(b, kv * n_rep, t, d)
    else:
        kr, vr = k, v
    past = past_k.shape[2]
    s = q.shape[2]
    t = k.shape[2]
    scores = torch.matmul(q, kr.transpose(-1, -2)) * scale
    qpos = torch.arange(s, dtype=torch.int64) + past  # [S]
    kpos = torch.arange(t, dtype=torch.int64)  # [T]
    causal = kpos[None, :] <= qpos[:, None]  # [S,T]
    allowed = causal[None, None, :, :] & (attention_mask[:, None, None, :] == 1)  # [B,1,S,T]
    scores = torch.where(allowed, scores, torch.tensor(NEG, dtype=torch.float32))
    if softmax_fp32:  # HF Llama's eager softmax runs in float32 (no-op in the float32 export)
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    else:
        probs = torch.softmax(scores, dim=-1)
    ctx = torch.matmul(probs, vr)  # [B,H,S,D]
    bsz, h, _, d = ctx.shape
    ctx = ctx.transpose(1, 2).reshape(bsz, s, h * d)
    return ctx, k, v


# ------------------------------------------------------------------------------------------------ GPT-2
class GPT2Attn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n_head = c.n_head
        self.hd = c.n_embd // c.n_head
        self.c_attn = Lin(c.n_embd, 3 * c.n_embd, True)
        self.c_proj = Lin(c.n_embd, c.n_embd, True)

    def forward(self, x, mask, pk, pv):
        b, s, e = x.shape
        q, k, v = self.c_attn(x).split(e, dim=2)
        q = q.reshape(b, s, self.n_head, self.hd).transpose(1, 2)
        k = k.reshape(b, s, self.n_head, self.hd).transpose(1, 2)
        v = v.reshape(b, s, self.n_head, self.hd).transpose(1, 2)
        ctx, k, v = attention(q, k, v, pk, pv, mask, 1.0 / math.sqrt(self.hd), 1)
        return self.c_proj(ctx), k, v


class GPT2MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        inner = c.n_inner or 4 * c.n_embd
        self.c_fc = Lin(c.n_embd, inner, True)
        self.c_proj = Lin(inner, c.n_embd, True)

    def forward(self, x):
        h = self.c_fc(x)
        h = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * torch.pow(h, 3.0))))
        return self.c_proj(h)


class GPT2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.attn = GPT2Attn(c)
        self.ln_2 = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.mlp = GPT2MLP(c)

    def forward(self, x, mask, pk, pv):
        a, k, v = self.attn(self.ln_1(x), mask, pk, pv)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, k, v


class GPT2Body(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wpe = nn.Embedding(c.n_positions, c.n_embd)
        self.h = nn.ModuleList([GPT2Block(c) for _ in range(c.n_layer)])
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)
        self.n_embd = c.n_embd

    def forward(self, wte_t, input_ids, attention_mask, position_ids, past):
        b, s = input_ids.shape
        emb = torch.index_select(wte_t, 1, input_ids.reshape(-1))  # [E, B*S] (wte_t = lm_head.weight = wte^T)
        x = emb.transpose(0, 1).reshape(b, s, self.n_embd) + self.wpe(position_ids)
        presents = []
        for i, blk in enumerate(self.h):
            x, k, v = blk(x, attention_mask, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return self.ln_f(x), presents


class GPT2Export(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.transformer = GPT2Body(c)
        self.lm_head = Lin(c.n_embd, c.vocab_size, False)  # tied: lm_head.weight == wte^T

    def load_hf(self, sd):
        own = {}
        for k, v in sd.items():
            if k == "transformer.wte.weight":
                own["lm_head.weight"] = v.t().contiguous()
            elif k == "lm_head.weight":
                continue  # tied to wte
            elif k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
                continue
            else:
                own[k] = v  # Conv1D weights are already [d_in, d_out]
        self.load_state_dict(own, strict=True)
        return self

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x, presents = self.transformer(self.lm_head.weight, input_ids, attention_mask, position_ids, past)
        return (self.lm_head(x), *presents)


# ------------------------------------------------------------------------------------------------ Llama
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        h = x.float()  # HF computes RMSNorm in float32 (no-op in the float32 export)
        var = h.pow(2).mean(-1, keepdim=True)
        return self.weight * (h * torch.rsqrt(var + self.eps)).to(x.dtype)


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


class LlamaAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.h = c.num_attention_heads
        self.kv = c.num_key_value_heads
        self.hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.q_proj = Lin(c.hidden_size, self.h * self.hd, c.attention_bias)
        self.k_proj = Lin(c.hidden_size, self.kv * self.hd, c.attention_bias)
        self.v_proj = Lin(c.hidden_size, self.kv * self.hd, c.attention_bias)
        self.o_proj = Lin(self.h * self.hd, c.hidden_size, c.attention_bias)

    def forward(self, x, cos, sin, mask, pk, pv):
        b, s, _ = x.shape
        q = self.q_proj(x).reshape(b, s, self.h, self.hd).transpose(1, 2)
        k = self.k_proj(x).reshape(b, s, self.kv, self.hd).transpose(1, 2)
        v = self.v_proj(x).reshape(b, s, self.kv, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        ctx, k, v = attention(q, k, v, pk, pv, mask, self.hd ** -0.5, self.h // self.kv, softmax_fp32=True)
        return self.o_proj(ctx), k, v


class LlamaMLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gate_proj = Lin(c.hidden_size, c.intermediate_size, c.mlp_bias)
        self.up_proj = Lin(c.hidden_size, c.intermediate_size, c.mlp_bias)
        self.down_proj = Lin(c.intermediate_size, c.hidden_size, c.mlp_bias)

    def forward(self, x):
        g = self.gate_proj(x)
        return self.down_proj(g * torch.sigmoid(g) * self.up_proj(x))


class LlamaLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.self_attn = LlamaAttn(c)
        self.post_attention_layernorm = RMSNorm(c.hidden_size, c.rms_norm_eps)
        self.mlp = LlamaMLP(c)

    def forward(self, x, cos, sin, mask, pk, pv):
        a, k, v = self.self_attn(self.input_layernorm(x), cos, sin, mask, pk, pv)
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, k, v


class LlamaBody(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LlamaLayer(c) for _ in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)

    def forward(self, input_ids, attention_mask, position_ids, inv_freq, past):
        x = self.embed_tokens(input_ids)
        # RoPE in float32 like HF (no-op casts in the float32 export; keeps the float64 parity check exact)
        freqs = position_ids[:, :, None].float() * inv_freq.float()[None, None, :]  # [B,S,hd/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos = emb.cos().to(x.dtype)[:, None, :, :]
        sin = emb.sin().to(x.dtype)[:, None, :, :]
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, attention_mask, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return self.norm(x), presents


class LlamaExport(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = LlamaBody(c)
        self.lm_head = Lin(c.hidden_size, c.vocab_size, False)
        hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        theta = getattr(c, "rope_theta", None) or c.rope_parameters["rope_theta"]
        inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
        self.register_buffer("inv_freq", inv, persistent=False)

    def load_hf(self, sd):
        own = {}
        for k, v in sd.items():
            if k.endswith("rotary_emb.inv_freq"):
                continue
            if k.endswith("_proj.weight") or k == "lm_head.weight":
                own[k] = v.t().contiguous()
            else:
                own[k] = v
        self.load_state_dict(own, strict=True)
        return self

    def forward(self, input_ids, attention_mask, position_ids, *past):
        x, presents = self.model(input_ids, attention_mask, position_ids, self.inv_freq, past)
        return (self.lm_head(x), *presents)
