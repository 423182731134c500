#!/usr/bin/env python3
"""Build the tiny, randomly initialised Llama (GQA) used to test Patchbay's Llama code paths.

Not trained: weights are HF's default init (normal std 0.02, RMSNorm weights 1) under a fixed seed, so the
checkpoint is bit-for-bit reproducible on the same torch version. Uses the tokenizer from train_gpt2.py.

Inputs : tools/.cache/tokenizer/
Outputs: tools/.cache/tiny-llama-hf/ (model.safetensors, config.json, generation_config.json, tokenizer files)
"""
import os
import shutil

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "tools", ".cache")
TOK_DIR = os.path.join(CACHE, "tokenizer")
OUT = os.path.join(CACHE, "tiny-llama-hf")
SEED = 1234


def main():
    torch.set_num_threads(2)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=4096, hidden_size=128, intermediate_size=344, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=256, rope_theta=10000.0,
        rms_norm_eps=1e-5, initializer_range=0.02, tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, bos_token_id=0, eos_token_id=0, pad_token_id=0, use_cache=True,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # make sure the init is the documented one regardless of HF init details
        g = torch.Generator().manual_seed(SEED)
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    GenerationConfig(bos_token_id=0, eos_token_id=0, pad_token_id=0, do_sample=False,
                     max_length=256).save_pretrained(OUT)
    for n in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(TOK_DIR, n), os.path.join(OUT, n))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny-llama params {n_params} -> {OUT}")


if __name__ == "__main__":
    main()
