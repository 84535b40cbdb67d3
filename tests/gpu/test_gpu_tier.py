"""The GPU tier: what only a GPU can show, run where one is (`make test-gpu`, or `pytest tests/gpu`).

- a bf16 training step of the train_model stage on a small Llama: loss finite and close to the CPU's fp32
  step on the same batch;
- ZeRO-3 (config/deepspeed/zero3.json) on one GPU under torchrun: trains, gathers and saves whole weights;
- PyTorch's sdpa attention against eager attention: the same logits within bf16 precision, padding included.

Without CUDA every test is skipped with its reason. AFT_GPU_TIER_DEVICE=cpu runs the tier's checks on the
CPU (ZeRO-3 through DeepSpeed's CPU accelerator; the bf16 step needs a GPU and stays skipped), to check
the tier itself where no GPU is. The throughput figures (tokens/s, MFU) are benchmarks/train_throughput.py's.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from tests.integration.test_train_model import config_json, env, metrics, run, stage_args

DEVICE = os.environ.get("AFT_GPU_TIER_DEVICE") or ("cuda" if torch.cuda.is_available() else "")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not DEVICE,
        reason="no CUDA device: the GPU tier runs where one is (AFT_GPU_TIER_DEVICE=cpu checks the tier"
        " itself)",
    ),
]
ON_GPU = DEVICE == "cuda"


def first_loss(out: Path) -> float:
    return json.loads((out.parent / "metrics.json").read_text())["history"][0]["loss"]


def test_a_bf16_step_is_close_to_the_cpu_fp32_step(tiny, tmp_path):
    """The same first batch through the stage: fp32 on the CPU, bf16 on the device (autocast; fp32 master
    weights without DeepSpeed): the first loss agrees to bf16's precision."""
    if not ON_GPU:
        pytest.skip("bf16 training needs a GPU: the config refuses it on the CPU (float32 there)")
    one_step = {"num_train_epochs": 0.125}  # 64 rows / global batch 8: one optimizer step
    cpu_out, dev_out = tmp_path / "cpu" / "model", tmp_path / "dev" / "model"
    for out in (cpu_out, dev_out):
        out.parent.mkdir()
    run(
        [sys.executable, *stage_args(tiny, cpu_out, config_json(**one_step))],
        cpu_out.parent,
        env(CUDA_VISIBLE_DEVICES=""),
    )
    dev_cfg = config_json(**one_step, bf16=True, num_gpus=1)
    run([sys.executable, *stage_args(tiny, dev_out, dev_cfg)], dev_out.parent)
    cpu, dev = first_loss(cpu_out), first_loss(dev_out)
    assert math.isfinite(dev) and dev == pytest.approx(cpu, rel=2e-2)
    assert metrics(dev_out)["train_steps"] == 1


def test_zero3_on_one_device_under_torchrun(tiny, tmp_path):
    """config/deepspeed/zero3.json (the paper's) with one rank: the run trains and saves whole tensors."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "model"
    ds = str(ROOT / "config" / "deepspeed" / "zero3.json")
    cfg = config_json(deepspeed=ds, num_train_epochs=0.5, bf16=ON_GPU, num_gpus=1 if ON_GPU else 0)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    run([*torchrun, *stage_args(tiny, out, cfg)], tmp_path)
    m = metrics(out)
    assert m["train_world_size"] == 1 and m["train_steps"] == 4 and math.isfinite(m["train_loss"])
    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny["base"])
    for (name, p), q in zip(model.named_parameters(), base.parameters(), strict=True):
        assert p.shape == q.shape and p.isfinite().all(), name  # gathered, not ZeRO shards


def test_sdpa_attention_matches_eager(tiny):
    """Logits of one small Llama under both attention implementations, right-padded batch."""
    from transformers import AutoModelForCausalLM

    dtype = torch.bfloat16
    models = {
        impl: AutoModelForCausalLM.from_pretrained(tiny["base"], dtype=dtype, attn_implementation=impl)
        .to(DEVICE)
        .eval()
        for impl in ("sdpa", "eager")
    }
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 250, (4, 48), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 40:] = 0  # one row padded on the right
    with torch.no_grad():
        logits = {
            impl: m(input_ids=ids.to(DEVICE), attention_mask=mask.to(DEVICE)).logits.float().cpu()
            for impl, m in models.items()
        }
    kept = mask.bool()
    diff = (logits["sdpa"] - logits["eager"])[kept].abs().max().item()
    scale = logits["eager"][kept].abs().max().item()
    assert diff <= 2e-2 * scale, (diff, scale)
