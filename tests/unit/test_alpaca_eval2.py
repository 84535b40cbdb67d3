"""AlpacaEval 2 through alpaca-eval: canonical order and references, our decoder under alpaca-eval's own
annotator (prompt, output-order switching, logprob parser), and its own LC / raw win rate computed
offline from a synthetic df_gamed.csv."""

from __future__ import annotations

import math

import pytest

from aft.eval import alpaca_eval2 as ae
from aft.pipeline.sources import read_records
from tests.conftest import shared_file
from tests.judge_fakes import write_synthetic_df_gamed

P_LOSER = 1 / (1 + math.e)  # the judge's probability for the slot it does not prefer (logprobs -0.2 vs -1.2)


@pytest.fixture(scope="module")
def real():
    rows = ae.question_rows(read_records(shared_file("data/alpaca_eval/instructions.jsonl")))
    refs = read_records(shared_file("data/alpaca_eval/gpt4_1106_preview_outputs.json"))
    return rows, refs


def slice_of(rows: list[dict], positions: list[int]) -> list[dict]:
    return [rows[i] for i in positions]


POSITIONS = [3, 17, 40, 41, 99, 150, 222, 300, 512, 640, 700, 804]


def answers_for(bench: list[dict], refs: list[dict], same_as_reference: int | None = None) -> list[dict]:
    out = []
    for r in bench:
        i = int(r["id"].removeprefix("ae"))
        text = refs[i]["output"] if i == same_as_reference else f"MODEL-ANSWER {i}: " + "words " * (i % 7 + 1)
        out.append({"id": r["id"], "turns": r["turns"], "outputs": [text]})
    return out


def test_head_to_head_keeps_canonical_positions_and_checks_the_references(real):
    rows, refs = real
    bench = slice_of(rows, POSITIONS)
    model, reference = ae.head_to_head(bench, answers_for(bench, refs), refs, "m1")
    assert [r["instruction"] for r in reference] == [refs[i]["instruction"] for i in POSITIONS]
    assert [r["output"] for r in reference] == [refs[i]["output"] for i in POSITIONS]
    assert {r["generator"] for r in reference} == {"gpt4_1106_preview"} and {
        m["generator"] for m in model
    } == {"m1"}
    assert ae.canonical_index(bench) == {refs[i]["instruction"]: i for i in POSITIONS}
    shuffled = refs[1:] + refs[:1]
    with pytest.raises(ValueError, match="canonical order"):
        ae.head_to_head(bench, answers_for(bench, refs), shuffled, "m1")
    with pytest.raises(ValueError, match="have no answer"):
        ae.head_to_head(bench, [], refs, "m1")


class FakeClient:
    """Stands in for JudgeClient: records requests, replies with the logprobs of a judge that always
    prefers the output containing MODEL-ANSWER."""

    model = "judge-z"

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def request(self, messages, **decoding):
        return {"model": self.model, "messages": messages, "n": 1, **decoding}

    def chat_many(self, requests, attempts=None):
        self.requests += requests
        out = []
        for r in requests:
            text = r["messages"][-1]["content"]
            model_in_m = text.find("MODEL-ANSWER") < text.find('"model_identifier": "M"')
            win, lose = ("m", "M") if model_in_m else ("M", "m")
            top = [
                {"token": win, "logprob": -0.2},
                {"token": lose, "logprob": -1.2},
                {"token": "x", "logprob": -9},
            ]
            out.append(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": win},
                    "logprobs": {"content": [{"token": win, "logprob": -0.2, "top_logprobs": top}]},
                    "usage": {"prompt_tokens": 100, "completion_tokens": 1, "total_tokens": 101},
                }
            )
        return out


@pytest.fixture(scope="module")
def annotated(real):
    rows, refs = real
    bench = slice_of(rows, POSITIONS)
    client = FakeClient()
    model, reference = ae.head_to_head(bench, answers_for(bench, refs, same_as_reference=99), refs, "m1")
    df = ae.annotate(
        model,
        reference,
        ae.completions_fn(client),
        client.model,
        "weighted_alpaca_eval_gpt4_turbo",
        0,
        ae.canonical_index(bench),
    )
    return df, client


def test_alpaca_evals_own_annotator_builds_the_requests(annotated):
    df, client = annotated
    assert len(client.requests) == len(POSITIONS) - 1  # identical outputs are a tie without a judge call
    r = client.requests[0]
    assert {k: v for k, v in r.items() if k != "messages"} == {
        "model": "judge-z",
        "n": 1,
        "max_tokens": 1,
        "temperature": 1,
        "top_p": 1.0,
        "logprobs": True,
        "top_logprobs": 5,
    }
    system, user = r["messages"]
    assert system["role"] == "system" and system["content"].startswith("You are a highly efficient assistant")
    assert user["content"].endswith("## Best Model Identifier")
    slots = {
        req["messages"][-1]["content"].find("MODEL-ANSWER") < req["messages"][-1]["content"].find('"M"')
        for req in client.requests
    }
    assert slots == {True, False}  # alpaca-eval switched the output order for some instructions


def test_preferences_are_unswitched_and_parsed_from_logprobs(annotated):
    df, _ = annotated
    assert list(df.index) == POSITIONS
    assert df.loc[99, "preference"] == 1.5
    others = df.drop(index=99)["preference"]
    assert others.tolist() == pytest.approx([2 - P_LOSER] * len(others))  # the model always preferred
    assert set(df["generator_1"]) == {"gpt4_1106_preview"} and set(df["generator_2"]) == {"m1"}


def test_win_rates_come_from_alpaca_evals_functions_on_our_copy_of_df_gamed(annotated, tmp_path, monkeypatch):
    import huggingface_hub.constants

    df, _ = annotated
    lc_fit = write_synthetic_df_gamed(tmp_path / "download_source/alpaca_eval_lc_fit/df_gamed.csv")

    import huggingface_hub.file_download as fd

    asked, metadata = [], fd.get_hf_file_metadata

    def offline_only(*args, **kwargs):  # huggingface_hub asks, and offline mode refuses the request
        asked.append(huggingface_hub.constants.HF_HUB_OFFLINE)
        return metadata(*args, **kwargs)

    monkeypatch.setattr(fd, "get_hf_file_metadata", offline_only)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    m = ae.win_rates(df.copy(), lc_fit)
    assert asked == [True] and huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored after the fit
    expected_wr = 100 * ((len(POSITIONS) - 1) * (1 - P_LOSER) + 0.5) / len(POSITIONS)
    assert m["win_rate"] == pytest.approx(expected_wr)
    assert m["n_total"] == len(POSITIONS) and m["n_draws"] == 1
    assert 0 < m["length_controlled_winrate"] < 100 and m["lc_standard_error"] > 0
    res = ae.result(df, m)
    assert res["scores"] == {"lc_win_rate": m["length_controlled_winrate"], "win_rate": m["win_rate"]}
    assert res["standard_errors"]["win_rate"] == m["standard_error"]
    assert (res["n"], res["n_judged"], res["n_unjudged"]) == (len(POSITIONS), len(POSITIONS), 0)
    rows = ae.judgment_rows(df)
    assert rows[0]["id"] == "ae003" and rows[0]["preference"] == pytest.approx(2 - P_LOSER)


def test_completions_fn_refuses_settings_it_would_drop():
    fn = ae.completions_fn(FakeClient())
    with pytest.raises(ValueError, match="not supported"):
        fn(["<|im_start|>user\nx<|im_end|>"], "judge-z", logit_bias={1: 2})
    with pytest.raises(ValueError, match="judge client serves"):
        fn(["<|im_start|>user\nx<|im_end|>"], "gpt-4-1106-preview", max_tokens=1)


def test_without_df_gamed_the_raw_win_rate_is_reported_and_the_lc_gap_said(annotated):
    from aft.eval.report import markdown_table

    df, _ = annotated
    m = ae.win_rates(df.copy(), None)
    expected_wr = 100 * ((len(POSITIONS) - 1) * (1 - P_LOSER) + 0.5) / len(POSITIONS)
    assert m["win_rate"] == pytest.approx(expected_wr) and m["standard_error"] > 0
    assert m["length_controlled_winrate"] is None and "df_gamed.csv" in m["lc_unavailable"]
    res = ae.result(df, m) | {"bench": "alpaca_eval2", "judge": "j", "paper_judge": False}
    res["wildcards"] = {"base": "b", "variant": "sft", "mode": "direct"}
    assert res["scores"]["lc_win_rate"] is None and res["lc_unavailable"] == m["lc_unavailable"]
    table = markdown_table([res], {"b": None}, paper_table=False)
    assert "| b | SFT | – |" in table and "no LC win rate for 1 rows: no df_gamed.csv" in table


def test_too_few_judged_outputs_for_the_lc_fit_give_the_raw_win_rate(annotated, tmp_path):
    df, _ = annotated
    few = df.copy()
    few.loc[few.index[4:], "preference"] = None  # 4 judged: the fit's 5-fold cross-validation needs 5
    m = ae.win_rates(few, write_synthetic_df_gamed(tmp_path / "df_gamed.csv"))
    assert m["length_controlled_winrate"] is None and m["n_total"] == 4
    assert m["lc_unavailable"] == f"only 4 of {len(df)} outputs were judged; the LC fit needs at least 5"
