"""Stage `convert_checkpoint`: a GGUF checkpoint (config `checkpoints.<base>.<variant>.gguf`) as a Hugging
Face folder that vLLM and transformers load like any released model: the weights dequantized to float32
(safetensors), and the tokenizer, chat template and end-of-turn token the GGUF file itself carries.

transformers reads the file through the `gguf` package. A GGUF-loaded model refuses `save_pretrained`, so
its state dict is copied into a model built from its config (without the quantization entry).

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.convert_checkpoint --config CFG --gguf FILE --out DIR --metrics FILE
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import time
from pathlib import Path

from aft.pipeline.stage import Outcome, run_stage

log = logging.getLogger("aft")


def check_chat_model(chat_template: str | None, eos_token: str | None, what: str) -> None:
    """A checkpoint evaluated as a chat model needs its own chat template and end-of-turn token: without
    them vLLM would fall back to a template of its own and answers would run to max_tokens."""
    if not chat_template:
        raise ValueError(f"{what}: the file carries no chat template (tokenizer.chat_template)")
    if not eos_token:
        raise ValueError(f"{what}: the file names no end-of-turn (eos) token")


def convert(gguf: Path, out: Path) -> dict:
    """Write the Hugging Face folder of a GGUF file at `out` (atomically: a folder beside it, renamed)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    check_chat_model(tok.chat_template, tok.eos_token, str(gguf))
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are plain float32 now
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.generation_config = loaded.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("converted %s: %d parameters, eos %r, into %s", gguf.name, n_params, tok.eos_token, out)
    return {
        "n_parameters": n_params,
        "vocab_size": len(tok),
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "chat_template_sha256": hashlib.sha256(tok.chat_template.encode()).hexdigest(),
        "architecture": type(model).__name__,
        "convert_s": time.time() - started,
    }


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gguf", type=Path, required=True, help="the .gguf file download_source wrote")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        return Outcome(convert(a.gguf, a.out), [a.out])

    run_stage("convert_checkpoint", __doc__, argv, arguments, {}, body)


if __name__ == "__main__":
    main()
