"""Stage `measure_target_loss`: the paper's §6.1 analysis. For the base and each model trained here, the
per-token loss (nats) of the off-policy aggregation targets given the query alone and given the query with
its proposals, on a seeded sample of the set: aggregation learning works where the proposals already make
the target likely (lower perplexity), which is why it converges faster.

Every model renders the conversations with the base's chat template (`bases.<base>.chat_template`), as
training does; the loss counts the target's tokens only, up to and including the end of the turn.

Usage (what the rule runs; runnable by hand too):
    python -m aft.stages.measure_target_loss --config CFG --base NAME --base-model DIR_OR_HUB_ID \
        --models VARIANT=DIR [VARIANT=DIR ...] --proposals JSONL --targets JSONL --template FILE \
        --out JSON --metrics FILE
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from aft.method.chat_templates import load_chat_template
from aft.method.target_loss import CONTEXTS, per_record_means, prompts, sample_records, summary, target_span
from aft.pipeline.config import BaseModelConfig, TargetLossConfig
from aft.pipeline.io import read_jsonl, write_json
from aft.pipeline.stage import Outcome, named_pairs, read_text_input, run_stage

log = logging.getLogger(__name__)


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="the base's name in the config (bases.<base>)")
    p.add_argument("--base-model", required=True, help="the base's model folder")
    p.add_argument("--models", nargs="*", default=[], help="VARIANT=FOLDER of each model trained here")
    p.add_argument("--proposals", type=Path, required=True, help="the off-policy proposal set")
    p.add_argument("--targets", type=Path, required=True, help="its aggregation targets")
    p.add_argument(
        "--template", required=True, help="the aggregation template training used (dataset.template_file)"
    )
    p.add_argument("--out", type=Path, required=True)


def encode(tokenizer, prompt: list[dict], target: str) -> tuple[list[int], tuple[int, int]]:
    """The conversation's token ids and the target's span in them."""
    full = [*prompt, {"role": "assistant", "content": target}]
    prompt_ids = tokenizer.apply_chat_template(
        prompt, tokenize=True, add_generation_prompt=True, return_dict=True
    )
    full_ids = tokenizer.apply_chat_template(full, tokenize=True, return_dict=True)
    return full_ids["input_ids"], target_span(prompt_ids["input_ids"], full_ids["input_ids"])


def summed_losses(
    model, tokenizer, items: list[tuple[list[int], tuple[int, int]]], batch_size: int
) -> list[float]:
    """Each conversation's summed negative log-likelihood over its target span (right-padded batches)."""
    import torch

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out: list[float] = []
    for k in range(0, len(items), batch_size):
        batch = items[k : k + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (row, _) in enumerate(batch):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # position t predicts token t + 1
        picked = logprobs.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        for i, (_, (start, end)) in enumerate(batch):
            out.append(-float(picked[i, start - 1 : end - 1].sum()))
    return out


def measure(
    path: str,
    family: str,
    records: list[dict],
    targets: dict[str, str],
    template: str,
    tc,
) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """One model's summed target loss per context and record, and each record's target tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.chat_template = load_chat_template(family)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    losses: dict[str, dict[str, float]] = {}
    tokens: dict[str, int] = {}
    for ctx in CONTEXTS:
        items = [encode(tokenizer, prompts(r, template)[ctx], targets[r["id"]]) for r in records]
        for r, (_, (start, end)) in zip(records, items, strict=True):
            if tokens.setdefault(r["id"], end - start) != end - start:
                raise ValueError(f"{r['id']}: the target tokenizes differently after the two prompts")
        losses[ctx] = dict(
            zip((r["id"] for r in records), summed_losses(model, tokenizer, items, tc.batch_size))
        )
    return losses, tokens


def run(
    tc: TargetLossConfig,
    base: BaseModelConfig,
    base_name: str,
    base_model: str,
    models: list[str],
    files: dict[str, Path],
    out: Path,
) -> dict:
    """Measure the base and every model; write each one's losses per context and record; returns the
    means (per model: loss and perplexity per context, and the reduction)."""
    template = read_text_input("dataset.template_file", str(files["template"]))
    proposals, targets = files["proposals"], files["targets"]
    target_of = {t["id"]: t["target"] for t in read_jsonl(targets)}
    records = sample_records(read_jsonl(proposals), target_of, tc.num_records, tc.seed)
    if len(records) < 2:
        raise SystemExit(f"only {len(records)} records with a target and proposals: nothing to compare")
    trained = named_pairs(models, "--models", "FOLDER")
    named = [("base", base_model), *trained.items()]
    result: dict = {"base": base_name, "records": [r["id"] for r in records], "models": {}}
    metrics: dict[str, float] = {"n_records": len(records)}
    for i, (name, path) in enumerate(named, 1):
        started = time.time()
        losses, tokens = measure(path, base.chat_template, records, target_of, template, tc)
        s = summary(losses, tokens)
        result["models"][name] = s | {"per_record": per_record_means(losses, tokens), "target_tokens": tokens}
        metrics |= {f"{name}_{k}": v for k, v in s.items()}
        log.info(
            "model %d/%d %s: loss given the query %.3f, given query and proposals %.3f (%.0f s)",
            i, len(named), name, s["loss_query"], s["loss_query_and_proposals"], time.time() - started,
        )  # fmt: skip
    write_json(out, result)
    return metrics


def main(argv: list[str] | None = None) -> None:
    def body(a: argparse.Namespace, cfg: dict) -> Outcome:
        files = {"proposals": a.proposals, "targets": a.targets, "template": Path(a.template)}
        metrics = run(cfg["target_loss"], cfg["base"], a.base, a.base_model, a.models, files, a.out)
        return Outcome(metrics, [a.out])

    run_stage(
        "measure_target_loss",
        __doc__,
        argv,
        arguments,
        {"target_loss": TargetLossConfig, "base": BaseModelConfig},
        body,
    )


if __name__ == "__main__":
    main()
