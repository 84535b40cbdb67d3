"""What a released chat model needed on the paper's code paths: its own chat template and end-of-turn
token (convert_checkpoint refuses a file without them), generations counted by how they ended, and a
report that shows an LLM judge's verdict without the texts it read."""

from __future__ import annotations

import pytest

from aft.gen.engine import count_finish
from aft.method.interface import EngineStats
from aft.stages.convert_checkpoint import check_chat_model


def test_generations_are_counted_by_how_they_ended():
    stats = EngineStats()
    count_finish(stats, "stop", None, "The final answer is 18.")  # the end-of-turn token
    count_finish(stats, "stop", "\n\n", "cut at a stop string")
    count_finish(stats, "length", None, "ran to max_tokens and was cut")
    count_finish(stats, "stop", None, "  \n")  # an empty answer: counted, whatever ended it
    assert (stats.finished_eos, stats.finished_stop_string, stats.finished_length) == (2, 1, 1)
    assert stats.empty_outputs == 1
    assert stats.as_dict("engine_")["engine_finished_length"] == 1


@pytest.mark.parametrize(
    ("template", "eos", "message"),
    [(None, "<|im_end|>", "carries no chat template"), ("{{ x }}", None, "names no end-of-turn")],
)
def test_a_checkpoint_without_its_own_chat_template_or_eos_is_refused(template, eos, message):
    check_chat_model("{% for m in messages %}{{ m['content'] }}{% endfor %}", "<|im_end|>", "ok.gguf")
    with pytest.raises(ValueError, match=message):
        check_chat_model(template, eos, "m.gguf")


def test_a_samples_verdict_shows_the_judges_call_not_the_texts_it_read():
    from aft.eval.evidence import verdict_line

    row = {
        "id": "ae000",
        "index": 0,
        "instruction": "What are the names of some famous actors that started their careers on Broadway?",
        "output_1": "Several famous actors started their careers on Broadway. " * 5,
        "generator_1": "gpt4_1106_preview",
        "preference": 1.27,
    }
    assert verdict_line(row) == "index=0, generator_1=gpt4_1106_preview, preference=1.27"
    assert (
        verdict_line({"id": "gsm0", "expected": "18", "strict_match": False})
        == "expected=18, strict_match=False"
    )
    assert verdict_line(None) == "not judged"
