import hashlib

from aft.method.prompts import PROPOSAL_SYSTEM, aggregation_messages, load_template, proposal_messages
from tests.conftest import ROOT, shared_file

CONV = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Add 2 and 3."},
]


def test_proposal_messages_put_a_newline_system_first_and_keep_the_conversations_own():
    # the official get_conversations prepends the layer's system message: [{system}] + conversation
    assert proposal_messages(CONV) == [{"role": "system", "content": "\n"}, *CONV]
    assert PROPOSAL_SYSTEM == "\n"


def test_proposal_messages_add_system_when_absent():
    assert proposal_messages(CONV[1:])[0] == {"role": "system", "content": "\n"}


def test_aggregation_messages_match_hand_written_expectation():
    got = aggregation_messages(CONV, ["The answer is 5.", "The answer is 6."], "TEMPLATE:")
    assert got == [
        {"role": "system", "content": "TEMPLATE:\n1. The answer is 5.\n2. The answer is 6."},
        {"role": "system", "content": "You are terse."},  # kept after the layer's, as officially
        {"role": "user", "content": "Add 2 and 3."},
    ]


def test_aggregation_keeps_multi_turn_history():
    conv = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    got = aggregation_messages(conv, ["p"], "T")
    assert got == [{"role": "system", "content": "T\n1. p"}, *conv]
    assert conv[0] == {"role": "user", "content": "Q1"}  # input not mutated


def test_official_template_loads_byte_for_byte():
    path = shared_file("data/aft/aggregation_template.txt")
    text = load_template(path)
    assert len(text) == 644
    assert hashlib.sha256(text.encode()).hexdigest().startswith("5263016f")
    assert text.endswith("Responses from models:")
    system = aggregation_messages([{"role": "user", "content": "q"}], ["a", "b"], text)[0]["content"]
    assert system == text + "\n1. a\n2. b"


def test_project_default_template_is_its_own_wording():
    text = load_template(ROOT / "config/templates/aggregation_default.txt")
    assert text.endswith("Drafts:") and "Responses from models" not in text
