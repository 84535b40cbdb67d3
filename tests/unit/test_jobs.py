"""The keyed layout of results/ (aft.pipeline.jobs): which jobs a config change makes anew, which it
shares, and the lineage the report lists. Pure: no Snakemake, no job runs."""

from __future__ import annotations

import copy

from aft.pipeline.artifacts import artifact_key, fingerprint
from aft.pipeline.config import load_config
from aft.pipeline.configfile import merge, read_config_file
from aft.pipeline.jobs import STAGES, JobGraph
from tests.conftest import ROOT

MINI = read_config_file(ROOT / "config/config.yaml")


def graph(overlay: dict | None = None) -> JobGraph:
    cfg = load_config(merge(copy.deepcopy(MINI), overlay or {}))
    return JobGraph(cfg, root=ROOT)


def keys(g: JobGraph) -> dict[tuple, str]:
    """Every job of the experiment -> its key."""
    jobs = g.lineage([("judge_answers", w) for w in g.judged()])
    return {(rule, tuple(sorted(w.items()))): g.key(rule, **w) for rule, w in jobs}


def changed(a: dict, b: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for job in a.keys() & b.keys():
        if a[job] != b[job]:
            out[job[0]] = out.get(job[0], 0) + 1
    return out


def test_an_inference_change_shares_every_trained_model():
    base, deeper = keys(graph()), keys(graph({"inference": {"num_aggregation": 3}}))
    assert base.keys() == deeper.keys()
    assert changed(base, deeper) == {"generate_answers": 6, "judge_answers": 6}


def test_the_experiment_name_and_description_are_no_job_setting():
    renamed = keys(graph({"experiment": "other", "description": "the same jobs under another name"}))
    assert renamed == keys(graph())


def test_more_seeds_add_replicas_and_keep_the_first():
    one, three = keys(graph()), keys(graph({"grid": {"seeds": [0, 1, 2]}}))
    assert changed(one, three) == {}  # every job of seed 0 (and everything before training) is shared
    added = {job[0] for job in three.keys() - one.keys()}
    assert added == {"train_model", "generate_answers", "judge_answers"}
    assert len(three) - len(one) == 2 * (3 + 6 + 6)


def test_each_replica_trains_with_its_seed_and_samples_with_inference_seed_plus_its_rank():
    g = graph({"grid": {"seeds": [7, 3]}})
    assert '"seed":7' in g.settings("train_model", base="mini", variant="sft", seed="7")
    w = {"base": "mini", "variant": "sft", "mode": "agg", "bench": "exact_match"}
    assert '"seed":2025' in g.settings("generate_answers", seed="7", **w)  # the first replica: official
    assert '"seed":2026' in g.settings("generate_answers", seed="3", **w)


def test_a_data_change_reaches_every_job_after_it():
    base, other = keys(graph()), keys(graph({"data": {"seed": 1}}))
    assert changed(base, other) == {
        "prepare_data": 1,
        "prepare_bench": 1,
        "build_base": 1,
        "build_proposals_off": 1,
        "build_proposals_on_part": 1,
        "build_proposals_on": 1,
        "build_targets": 2,
        "build_dataset": 3,
        "train_model": 3,
        "generate_answers": 6,
        "judge_answers": 6,
    }


def test_a_template_is_identified_by_its_content(tmp_path):
    (tmp_path / "config").mkdir()
    g = graph()
    w = {"base": "mini", "variant": "aft_off"}
    assert g.text_identity("config/templates/aggregation_default.txt").startswith("sha256:")
    moved = JobGraph(g.cfg, g.scatter, tmp_path)  # the same config where the template does not exist
    assert moved.key("build_dataset", **w) != g.key("build_dataset", **w)


def test_lineage_lists_parents_first_stage_by_stage():
    g = graph()
    jobs = g.lineage([("judge_answers", w) for w in g.judged()])
    stages = [rule for rule, _ in jobs]
    assert stages == sorted(stages, key=STAGES.index)
    seen = set()
    for rule, w in jobs:
        assert all((r, tuple(sorted(pw.items()))) in seen for r, pw in g.parents(rule, **w))
        seen.add((rule, tuple(sorted(w.items()))))
    assert len(jobs) == 26  # the miniature's jobs without make_report


def test_job_folders_name_the_job_and_end_in_its_key():
    g = graph()
    folder = g.job_dir("train_model", base="mini", variant="aft_on", seed="0")
    key = g.key("train_model", base="mini", variant="aft_on", seed="0")
    assert folder == f"results/train_model/mini/aft_on/seed0/{key}" and len(key) == 10


def test_artifact_key_depends_on_every_part():
    base = artifact_key("r", {"a": "1"}, "{}", ["p:1"])
    assert base == artifact_key("r", {"a": "1"}, "{}", ["p:1"])
    assert (
        len(
            {
                base,
                artifact_key("s", {"a": "1"}, "{}", ["p:1"]),
                artifact_key("r", {"a": "2"}, "{}", ["p:1"]),
                artifact_key("r", {"a": "1"}, "{1}", ["p:1"]),
                artifact_key("r", {"a": "1"}, "{}", ["p:2"]),
            }
        )
        == 5
    )


def test_fingerprint_of_a_file_and_a_folder(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"abc")
    (tmp_path / "m" / ".snakemake_timestamp").write_bytes(b"")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert fingerprint(tmp_path / "m") == {"w.bin": sha}
    assert fingerprint(tmp_path / "m" / "w.bin") == {"w.bin": sha}


def test_the_reports_config_hash_leaves_out_tracking_and_resources():
    from aft.pipeline.config import results_hash

    base = results_hash(graph().cfg)
    assert results_hash(graph({"tracking": {"experiment": "renamed"}}).cfg) == base
    assert results_hash(graph({"resources": {"gpu_model": "h100"}}).cfg) == base
    assert results_hash(graph({"inference": {"n": 3}}).cfg) != base


# ------------------------------------------------ a real model from a GGUF file, the downstream tasks
REAL = read_config_file(ROOT / "config/experiments/real_model_cpu.yaml")


def test_the_real_model_overlay_converts_its_gguf_once_and_trains_nothing():
    g = graph(REAL)
    jobs = g.lineage([("judge_answers", w) for w in g.judged()])
    rules = [rule for rule, _ in jobs]
    assert {r: rules.count(r) for r in set(rules)} == {
        "download_source": 12,  # 1 GGUF + 2 AlpacaEval + 3 MT-Bench + GSM8K + IFEval + 4 punkt_tab files
        "convert_checkpoint": 1,
        "prepare_bench": 4,
        "generate_answers": 8,
        "judge_answers": 8,
    }
    answers = {"base": "smollm2", "variant": "sft", "seed": "0", "mode": "agg", "bench": "gsm8k"}
    assert ("convert_checkpoint", {"base": "smollm2", "variant": "sft"}) in g.parents(
        "generate_answers", **answers
    )
    gguf = {"source": "checkpoint_smollm2_sft", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert g.parents("convert_checkpoint", base="smollm2", variant="sft") == [("download_source", gguf)]
    assert g.judged()[0]["base"] == "smollm2"  # grid.bases: the miniature's base is not evaluated


def test_a_benchmark_slice_or_prompt_changes_only_that_benchmarks_jobs():
    before, after = (
        keys(graph(REAL)),
        keys(graph(merge(copy.deepcopy(REAL), {"benchmarks": {"gsm8k": {"max_questions": 4}}}))),
    )
    moved = {job[0] for job in before if before[job] != after[job]}
    assert moved == {"prepare_bench", "generate_answers", "judge_answers"}
    assert all(dict(job[1])["bench"] == "gsm8k" for job in before if before[job] != after[job])


def test_lm_eval_scored_jobs_read_no_judge_setting():
    """GSM8K and IFEval are scored by lm-eval's code: a judge change makes only the LLM-judged jobs anew."""
    other_judge = merge(copy.deepcopy(REAL), {"judge": {"model": "another-judge"}})
    before, after = keys(graph(REAL)), keys(graph(other_judge))
    moved = sorted({dict(job[1])["bench"] for job in before if before[job] != after[job]})
    assert moved == ["alpaca_eval2", "mt_bench"]
    w = {"base": "smollm2", "variant": "sft", "seed": "0", "mode": "direct", "bench": "ifeval"}
    assert graph(REAL).settings("judge_answers", **w) == "{}"


def test_the_miniature_keeps_its_keys_without_a_benchmarks_section():
    """Naming no benchmark in `benchmarks` leaves prepare_bench's settings as they were (the data section
    alone), so the default run's results keep their folders."""
    g = graph()
    assert g.settings("prepare_bench", bench="exact_match") == g.settings("prepare_data")  # {"data": ...}


VOTE8 = {"kind": "majority_vote", "n": 8}
WIDE = {"kind": "propose_aggregate", "n": 2, "num_aggregation": 3}


def test_adding_a_strategy_adds_its_jobs_and_reruns_nothing():
    base = keys(graph())
    more = keys(graph({"grid": {"modes": ["direct", "agg", "vote-8"]}, "strategies": {"vote-8": VOTE8}}))
    assert changed(base, more) == {}
    added = sorted({(job[0], dict(job[1])["mode"]) for job in more.keys() - base.keys()})
    assert added == [("generate_answers", "vote-8"), ("judge_answers", "vote-8")]
    assert len(more) - len(base) == 2 * 3  # 3 variants x (answer + judge)


def test_a_strategy_reads_its_own_section_not_the_built_in_width_or_its_scope():
    def strategy_keys(overlay: dict) -> dict:
        cfg = {"grid": {"modes": ["agg-w2-d3"]}, "strategies": {"agg-w2-d3": WIDE}}
        return keys(graph(merge(cfg, overlay)))

    plain = strategy_keys({})
    # the built-in agg's width is not this strategy's: no rerun
    assert strategy_keys({"inference": {"n": 3}}) == plain
    # narrowing its scope drops jobs and keeps the others' keys
    narrowed = strategy_keys({"strategies": {"agg-w2-d3": {"variants": ["aft_on"]}}})
    assert narrowed.items() <= plain.items() and len(narrowed) < len(plain)
    # its own width and the shared sampling do rerun it
    assert changed(plain, strategy_keys({"strategies": {"agg-w2-d3": {"n": 4}}})) == {
        "generate_answers": 3,
        "judge_answers": 3,
    }
    assert changed(plain, strategy_keys({"inference": {"temperature": 0.9}}))["generate_answers"] == 3
    g = graph({"grid": {"modes": ["agg-w2-d3"]}, "strategies": {"agg-w2-d3": WIDE}})
    settings = g.settings(
        "generate_answers", base="mini", variant="sft", seed="0", mode="agg-w2-d3", bench="exact_match"
    )
    assert '"n":2,"num_aggregation":3' in settings and '"kind":"propose_aggregate"' in settings


BON = {"kind": "best_of_n", "n": 4, "reward_model": "rm"}
RM = {
    "source": "train",
    "model": None,
    "revision": None,
    "train": {
        "base": "mini",
        "rating": "fine_grained",
        "heldout_fraction": 0.1,
        "learning_rate": 0.001,
        "num_train_epochs": 1,
        "batch_size": 16,
        "max_length": 256,
        "seed": 0,
    },
    "dtype": "float32",
    "batch_size": 64,
    "max_length": 256,
}


def test_best_of_n_reads_its_reward_model_trained_once_and_reruns_nothing_else():
    def bon_graph(overlay: dict | None = None):
        cfg = {
            "grid": {"modes": ["direct", "agg", "bon-4"]},
            "strategies": {"bon-4": BON},
            "reward_models": {"rm": RM},
        }
        return graph(merge(cfg, overlay or {}))

    g = bon_graph()
    plain = keys(g)
    assert changed(keys(graph()), plain) == {}  # adding best-of-N reruns nothing
    assert g.reward_model_jobs() == [("train_reward_model", {"rm": "rm"})] and g.reward_models_used() == [
        "rm"
    ]
    w = {"base": "mini", "variant": "aft_on", "seed": "0", "mode": "bon-4", "bench": "exact_match"}
    assert ("train_reward_model", {"rm": "rm"}) in g.parents("generate_answers", **w)
    assert g.parents("train_reward_model", rm="rm") == [
        ("prepare_data", {}),
        ("build_base", {"base": "mini"}),
    ]
    # how it scores reruns the best-of-N answers, not the reward model's training
    scoring = changed(plain, keys(bon_graph({"reward_models": {"rm": {"batch_size": 8}}})))
    assert scoring == {"generate_answers": 3, "judge_answers": 3}
    # how it is trained reruns it and the answers it chose
    assert changed(plain, keys(bon_graph({"reward_models": {"rm": {"train": {"seed": 1}}}}))) == {
        "train_reward_model": 1,
        "generate_answers": 3,
        "judge_answers": 3,
    }
    hub = {"source": "hub", "model": "org/rm", "revision": "a" * 40, "train": None}
    assert bon_graph({"reward_models": {"rm": hub}}).reward_model_jobs() == []


def test_a_strategy_scope_limits_the_grid():
    g = graph(
        {"grid": {"modes": ["direct", "vote-8"]}, "strategies": {"vote-8": VOTE8 | {"variants": ["aft_on"]}}}
    )
    assert sorted((w["variant"], w["mode"]) for w in g.judged()) == [
        ("aft_off", "direct"),
        ("aft_on", "direct"),
        ("aft_on", "vote-8"),
        ("sft", "direct"),
    ]


def test_a_strategy_scoped_outside_a_narrowed_grid_runs_nowhere():
    g = graph(
        {
            "grid": {"modes": ["direct", "vote-8"], "variants": ["sft"]},
            "strategies": {"vote-8": VOTE8 | {"variants": ["aft_on"]}},
        }
    )
    assert [w["mode"] for w in g.judged()] == ["direct"]
