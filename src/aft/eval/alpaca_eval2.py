"""AlpacaEval 2 through the alpaca-eval library: the model's outputs against the gpt4_1106_preview
reference outputs, judged with alpaca-eval's annotator config (`weighted_alpaca_eval_gpt4_turbo`: its
prompt, decoding settings, output-order randomisation and logprob parser), scored with its own
`get_length_controlled_winrate` (LC and raw win rate with standard errors).

Only the transport is ours: the annotator's `openai_completions` decoder is swapped for
`completions_fn`, which sends the same chat requests through `EndpointClient` (retries, backoff,
concurrency limit, judgment cache). alpaca-eval's own annotation cache is off (it is keyed by annotator
name, not by judge model); its length-controlled fit saves no weights (they would go to site-packages)
and reads its data, df_gamed.csv, from our pinned copy (`offline_hub_file`), never from the hub.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from aft.eval.registry import JudgeFiles
from aft.gen.endpoint import EndpointClient
from aft.pipeline.config import JudgeConfig

REFERENCE_GENERATOR = "gpt4_1106_preview"
DECODING_KEYS = ("max_tokens", "temperature", "top_p", "logprobs", "top_logprobs")


def head_to_head(
    bench_rows: list[dict], answers: list[dict], references: list[dict], generator: str
) -> tuple[list[dict], list[dict]]:
    """(model outputs, reference outputs) as alpaca-eval takes them, in canonical order.

    Bench rows are the 805 instructions in canonical order (ids ae000...); references the reference
    file's rows in the same order (checked instruction by instruction); answers the model's outputs."""
    by_id = {a["id"]: a for a in answers}
    missing = [r["id"] for r in bench_rows if r["id"] not in by_id]
    if missing:
        raise ValueError(f"{len(missing)} AlpacaEval instructions have no answer, e.g. {missing[:3]}")
    index = canonical_index(bench_rows)
    model, reference = [], []
    for row in bench_rows:
        i = index[row["turns"][0]]
        if i >= len(references) or references[i]["instruction"] != row["turns"][0]:
            raise ValueError(
                f"reference outputs do not match the instructions at position {i} ({row['id']}): the files"
                " must both be in AlpacaEval's canonical order"
            )
        model.append({"instruction": row["turns"][0], "output": by_id[row["id"]]["outputs"][-1]})
        reference.append({"instruction": row["turns"][0], "output": references[i]["output"]})
    for m in model:
        m["generator"] = generator
    for r in reference:
        r["generator"] = references[0].get("generator", REFERENCE_GENERATOR)
    return model, reference


def canonical_index(bench_rows: list[dict]) -> dict[str, int]:
    """Instruction -> its position among the 805 (ids ae000...): what alpaca-eval's LC fit looks up."""
    index = {r["turns"][0]: int(r["id"].removeprefix("ae")) for r in bench_rows}
    if len(index) != len(bench_rows):
        raise ValueError("AlpacaEval instructions must be unique (they are the merge key)")
    return index


def completions_fn(client: EndpointClient) -> Callable[..., dict]:
    """A decoder with `openai_completions`' contract: the annotator's ChatML prompts become chat
    requests (alpaca-eval's own `prompt_to_chatml`); returns completions and the raw choices."""
    from alpaca_eval.utils import prompt_to_chatml

    def complete(prompts: Sequence[str], model_name: str, **decoding: object) -> dict:
        unknown = sorted(set(decoding) - set(DECODING_KEYS))
        if unknown:
            raise ValueError(f"annotator decoding settings {unknown} are not supported by our transport")
        if model_name != client.model:
            raise ValueError(
                f"annotator asks for model {model_name!r}, the judge client serves {client.model!r}"
            )
        decoding = {"top_p": 1.0, **decoding}  # what alpaca-eval's openai decoder sends unless told otherwise
        started = time.time()
        requests = [client.request(prompt_to_chatml(p.strip()), **decoding) for p in prompts]
        choices = client.chat_many(requests)
        per_example = (time.time() - started) / max(len(prompts), 1)
        out = []
        for c in choices:
            text = (c.get("message") or {}).get("content") or " "  # alpaca-eval's stand-in for ""
            out.append({**c, "text": text, "total_tokens": (c.get("usage") or {}).get("total_tokens", 0)})
        return {
            "completions": [c["text"] for c in out],
            "completions_all": out,
            "price_per_example": [math.nan] * len(out),  # tokens are counted in EndpointStats instead
            "time_per_example": [per_example] * len(out),
        }

    return complete


def annotate(
    model_outputs: list[dict],
    reference_outputs: list[dict],
    complete: Callable[..., dict],
    model_name: str,
    annotator: str,
    seed: int,
    index: dict[str, int],
):
    """alpaca-eval's head-to-head annotations (reference = output_1, model = output_2), as a DataFrame
    indexed by each instruction's canonical position (`index`: instruction -> position)."""
    import pandas as pd
    from alpaca_eval.annotators import PairwiseAnnotator

    class TransportSwapped(PairwiseAnnotator):
        def _initialize_annotators(self, **kwargs):
            annotators = super()._initialize_annotators(**kwargs)
            for single in annotators.values():
                single.fn_completions = complete
                single.completions_kwargs = {**single.completions_kwargs, "model_name": model_name}
            return annotators

    ann = TransportSwapped(annotators_config=annotator, seed=seed, caching_path=None)
    rows = ann.annotate_head2head(outputs_1=reference_outputs, outputs_2=model_outputs)
    df = pd.DataFrame(rows)
    df.index = [index[x] for x in df["instruction"]]
    return df.sort_index()


LC_FIT_REPO = "tatsu-lab/alpaca_eval"  # the hub dataset alpaca-eval reads df_gamed.csv from


@contextmanager
def offline_hub_file(path: Path, repo: str, filename: str) -> Iterator[Path]:
    """A temporary Hugging Face cache holding `path` as `filename` of the dataset `repo` at `main`, with
    the hub offline: `hf_hub_download(repo, filename, repo_type="dataset", cache_dir=<yielded>)` then
    returns our pinned, checksummed copy and never reaches the network (compute nodes often have none).
    The snapshot is named after the file's sha1, as a cache names a snapshot after its commit."""
    import huggingface_hub.constants

    snapshot_id = hashlib.sha1(path.read_bytes()).hexdigest()
    offline = huggingface_hub.constants.HF_HUB_OFFLINE
    with tempfile.TemporaryDirectory(prefix="aft-hf-") as cache:
        folder = Path(cache) / f"datasets--{repo.replace('/', '--')}"
        (folder / "snapshots" / snapshot_id).mkdir(parents=True)
        (folder / "snapshots" / snapshot_id / filename).symlink_to(path.resolve())
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text(snapshot_id)
        huggingface_hub.constants.HF_HUB_OFFLINE = True
        try:
            yield Path(cache)
        finally:
            huggingface_hub.constants.HF_HUB_OFFLINE = offline


def win_rates(annotations, lc_fit: Path | None) -> dict[str, float | str | None]:
    """alpaca-eval's `get_length_controlled_winrate` on annotations indexed by canonical position.

    Its fit reads df_gamed.csv (`lc_fit`: the source `alpaca_eval_lc_fit`, fetched and checked by
    download_source) where alpaca-eval looks for it, the HF cache (`offline_hub_file`). When the fit
    cannot run (no df_gamed.csv given; fewer than 5 judged outputs for its 5-fold cross-validation), the
    raw win rate, which needs no fit, comes from alpaca-eval's `get_winrate`, the LC fields are None and
    `lc_unavailable` says why."""
    from alpaca_eval import constants
    from alpaca_eval.metrics import get_length_controlled_winrate, get_winrate

    judged = int(annotations["preference"].notna().sum())
    reason = None
    if lc_fit is None:
        reason = f"no df_gamed.csv (source alpaca_eval_lc_fit: hub dataset {LC_FIT_REPO}) was given"
    elif judged < 5:
        reason = f"only {judged} of {len(annotations)} outputs were judged; the LC fit needs at least 5"
    if reason:
        raw = {k: float(v) for k, v in get_winrate(annotations).items()}
        return raw | {"length_controlled_winrate": None, "lc_standard_error": None, "lc_unavailable": reason}
    with offline_hub_file(Path(lc_fit), LC_FIT_REPO, "df_gamed.csv") as cache:
        constants.DEFAULT_CACHE_DIR = str(cache)
        out = get_length_controlled_winrate(annotations, save_weights_dir=None)
    return {k: float(v) for k, v in out.items()}


def result(annotations, metrics: dict) -> dict:
    """The judge result: LC and raw win rate (%) with standard errors, and counts (LC None, with the
    reason, when the fit could not run)."""
    unjudged = annotations.index[annotations["preference"].isna()].tolist()
    note = {"lc_unavailable": metrics["lc_unavailable"]} if metrics.get("lc_unavailable") else {}
    return note | {
        "scores": {"lc_win_rate": metrics["length_controlled_winrate"], "win_rate": metrics["win_rate"]},
        "standard_errors": {
            "lc_win_rate": metrics["lc_standard_error"],
            "win_rate": metrics["standard_error"],
        },
        "n": len(annotations),
        "n_judged": int(metrics["n_total"]),
        "n_unjudged": len(unjudged),
        "unjudged": [f"ae{i:03d}" for i in unjudged],
        "details": {
            k: metrics[k] for k in ("n_wins", "n_wins_base", "n_draws", "discrete_win_rate") if k in metrics
        },
    }


def judgment_rows(annotations) -> list[dict]:
    """One row per instruction for the judgments file: what the judge saw and said."""
    import json

    keep = ["instruction", "output_1", "generator_1", "output_2", "generator_2", "preference"]
    extra = [c for c in ("preference_raw_completion", "glm_preference") if c in annotations.columns]
    rows = []
    for i, row in annotations[keep + extra].iterrows():
        rec = {"id": f"ae{i:03d}", "index": int(i)}
        for k, v in row.items():
            rec[k] = None if isinstance(v, float) and math.isnan(v) else v
        rows.append(json.loads(json.dumps(rec, default=str)))
    return rows


def question_rows(instructions: list[dict]) -> list[dict]:
    """The 805 AlpacaEval instructions (chat-query records) in the project's schema, canonical order kept."""
    rows = []
    for i, rec in enumerate(instructions):
        query = rec["query"] if "query" in rec else [{"role": "user", "content": rec["instruction"]}]
        turns = [m["content"] for m in query if m["role"] == "user"]
        rows.append({"id": f"ae{i:03d}", "turns": turns, "answer": None, "category": "alpaca_eval"})
    return rows


def judge_answers(
    jc: JudgeConfig,
    answers: list[dict],
    bench: list[dict],
    files: JudgeFiles,
    client: EndpointClient,
    generator: str,
) -> tuple[dict, list[dict]]:
    """LC and raw win rate against the reference outputs, through alpaca-eval's own annotator."""
    if jc.alpaca_eval2 is None:
        raise SystemExit("benchmark 'alpaca_eval2' needs the judge.alpaca_eval2 section")
    if not files.reference:
        raise SystemExit("benchmark 'alpaca_eval2' needs the reference outputs: give --reference FILE")
    cfg = jc.alpaca_eval2
    model_out, ref_out = head_to_head(bench, answers, files.reference, generator)
    annotations = annotate(
        model_out,
        ref_out,
        completions_fn(client),
        client.model,
        cfg.annotator,
        cfg.seed,
        canonical_index(bench),
    )
    metrics = win_rates(annotations, files.lc_fit)
    return result(annotations, metrics) | {"protocol": cfg.annotator}, judgment_rows(annotations)


def question_scores(rows: list[dict]) -> dict[str, float]:
    """Per instruction: 100 x (preference - 1), the raw win rate's per-question form (1 = the reference
    output wins, 2 = ours); unjudged instructions are left out."""
    return {r["id"]: 100.0 * (r["preference"] - 1.0) for r in rows if r.get("preference") is not None}
