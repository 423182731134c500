"""Shared pieces of the RLSEdit reference tools: the HF model, the edited layers, keys, values and the recursion.

This is the PyTorch/NumPy reference that Patchbay's TypeScript editor (src/edits/) is checked against, written
from ../shared/METHODS.md (RLSEdit) independently of the TypeScript code. Conventions:
  * W is the edited map as ONNX stores it, [d_k, d_v] = [d_in, d_out] (GPT-2 Conv1D weight as is; Llama
    nn.Linear weight transposed). Output of the layer: y = k·W + b.
  * K_t is [d_k, u] (one column per key), V_t is [u, d_v].
  * C and W are float64; the model runs in float32.
"""
import json
import os

import numpy as np
import torch
from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HF_CACHE = os.environ.get("PATCHBAY_HF_CACHE", "/work/hf-cache")

# Context prefixes the key is averaged over and the value is optimised under (ours; ROME uses model-generated
# prefixes). "{}" is the prompt alone. Must equal src/edits/edit-settings.ts CONTEXT_TEMPLATES.
CONTEXT_TEMPLATES = ["{}", "Hark. {}", "Now, {}", "I say, {}", "Then. {}"]


def load_model(name="tiny-gpt2"):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(os.path.join(HF_CACHE, f"{name}-hf"), dtype=torch.float32)
    model.eval()
    tok = Tokenizer.from_file(os.path.join(ROOT, "models", name, "tokenizer.json"))
    return model, tok


def mlp_out_module(model, layer):
    """The edited map of block `layer`: GPT-2 mlp.c_proj, Llama mlp.down_proj."""
    if hasattr(model, "transformer"):
        return model.transformer.h[layer].mlp.c_proj
    return model.model.layers[layer].mlp.down_proj


def blocks(model):
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


def layer_weight(model, layer):
    """W [d_k, d_v] float64 in ONNX orientation."""
    m = mlp_out_module(model, layer)
    w = m.weight.detach().double().numpy()
    return w.copy() if hasattr(model, "transformer") else w.T.copy()


def set_layer_weight(model, layer, w):
    m = mlp_out_module(model, layer)
    t = torch.from_numpy(np.asarray(w, dtype=np.float32))
    with torch.no_grad():
        m.weight.copy_(t if hasattr(model, "transformer") else t.T)


def encode(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def subject_index(tok, text, subject):
    """Index of the subject's last token in `text`: the token count of the text up to the subject's end, − 1."""
    end = text.rfind(subject)
    assert end >= 0, (text, subject)
    return len(encode(tok, text[: end + len(subject)])) - 1


def capture_inputs(model, layers, ids):
    """Runs the model on ids [1, T]; returns {layer: input of the edited map [T, d_k]} (float64)."""
    got = {}
    hooks = []
    for l in layers:
        def hook(mod, args, l=l):
            got[l] = args[0][0].detach().double().numpy()
        hooks.append(mlp_out_module(model, l).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(torch.tensor([ids]))
    finally:
        for h in hooks:
            h.remove()
    return got


def keys_for(model, tok, layers, prompt, subject):
    """Per layer, the key [d_k]: the edited map's input at the subject's last token, mean over CONTEXT_TEMPLATES."""
    acc = {l: [] for l in layers}
    for tpl in CONTEXT_TEMPLATES:
        text = tpl.format(prompt)
        idx = subject_index(tok, text, subject)
        got = capture_inputs(model, layers, encode(tok, text))
        for l in layers:
            acc[l].append(got[l][idx])
    return {l: np.mean(np.stack(v), axis=0) for l, v in acc.items()}


def rls_init(mom2, lam, mu):
    """C0 = (λ²I + μ²·K0K0ᵀ)⁻¹, K0K0ᵀ := E[kkᵀ] from the corpus statistics."""
    d = mom2.shape[0]
    return np.linalg.inv(lam * lam * np.eye(d) + mu * mu * mom2)


def rls_step(C, W, K, V):
    """One Woodbury step. C [d_k, d_k], W [d_k, d_v], K [d_k, u], V [u, d_v] → (C_t, W_t)."""
    F = C @ K
    S = np.eye(K.shape[1]) + K.T @ F
    L = np.linalg.cholesky(S)
    X = np.linalg.solve(L.T, np.linalg.solve(L, F.T))  # S⁻¹Fᵀ
    C = C - F @ X
    W = W + (C @ K) @ (V - K.T @ W)
    return C, W
