"""Benchmark: training throughput of a Llama at long sequence length, in tokens/s and model FLOPs
utilisation (MFU), the figure the cost estimate assumes (aft.tools.costs: MFU 0.35).

A randomly initialised Llama (default about 1.1B parameters: hidden 2048, 22 layers, 32 heads with 4 KV
heads, TinyLlama's shape) trains on random token batches at sequence length 4,096: bf16 weights, fused
AdamW, sdpa attention, full forward + backward + optimizer step; the first steps are a warm-up and not
timed. FLOPs per token = 6 x parameters + 12 x layers x hidden x sequence length (the attention
scores, PaLM's appendix B); MFU = FLOPs per token x tokens/s / the GPU's dense bf16 peak.

Usage (on a GPU; prints one JSON object):
    python benchmarks/train_throughput.py                        # ~1.1B, seq 4096, batch 2, H100/H200 peak
    python benchmarks/train_throughput.py --gradient-checkpointing --batch 8
A tiny CPU run checks the script itself:
    python benchmarks/train_throughput.py --device cpu --dtype float32 --hidden 64 --layers 2 \
        --heads 4 --kv-heads 2 --intermediate 128 --vocab 512 --seq-len 128 --batch 2 --steps 3 \
        --warmup 1 --peak-tflops 1
"""

from __future__ import annotations

import argparse
import json
import time

# dense bf16 peak of one GPU (vendors' datasheets, without sparsity), by a word in the device name
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}


def flops_per_token(params: int, layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs a token: 6 a parameter (forward 2, backward 4) plus the attention scores."""
    return 6.0 * params + 12.0 * layers * hidden * seq_len


def peak_of(device_name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in device_name), None)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--layers", type=int, default=22)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=4)
    p.add_argument("--intermediate", type=int, default=5632)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--seq-len", type=int, default=4096)
    p.add_argument("--batch", type=int, default=2, help="sequences a step")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--peak-tflops", type=float, default=None, help="default: by the GPU's name")
    a = p.parse_args(argv)

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    peak = a.peak_tflops or peak_of(name)
    if peak is None:
        raise SystemExit(
            f"no known bf16 peak for {name!r} (known: {sorted(PEAK_TFLOPS)}): give --peak-tflops"
        )
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=a.vocab,
        hidden_size=a.hidden,
        intermediate_size=a.intermediate,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        max_position_embeddings=a.seq_len,
        attn_implementation=a.attn,
    )
    model = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    if a.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == "cuda")

    def step() -> float:
        ids = torch.randint(0, a.vocab, (a.batch, a.seq_len), device=device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # waits for the step to finish

    for _ in range(a.warmup):
        step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    losses = [step() for _ in range(a.steps)]
    seconds = time.perf_counter() - started
    tokens_per_s = a.steps * a.batch * a.seq_len / seconds
    fpt = flops_per_token(params, a.layers, a.hidden, a.seq_len)
    result = {
        "device": name,
        "params": params,
        "dtype": a.dtype,
        "attn": a.attn,
        "seq_len": a.seq_len,
        "batch": a.batch,
        "gradient_checkpointing": a.gradient_checkpointing,
        "steps_timed": a.steps,
        "step_s": seconds / a.steps,
        "tokens_per_s": tokens_per_s,
        "tflops_per_s": fpt * tokens_per_s / 1e12,
        "peak_tflops": peak,
        "mfu": fpt * tokens_per_s / (peak * 1e12),
        "loss_first_last": [losses[0], losses[-1]],
        "max_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
