"""The DAG as Snakemake resolves it (dry runs: seconds, no job runs)."""

from tests.conftest import copy_workflow, dry_run

MINIATURE = {
    "prepare_data": 1,
    "prepare_bench": 1,
    "build_base": 1,
    "build_proposals_off": 1,
    "build_proposals_on": 1,
    "build_targets": 2,
    "build_dataset": 3,
    "train_model": 3,
    "generate_answers": 6,
    "judge_answers": 6,
    "make_report": 1,
    "all": 1,
}


def test_miniature_dag(tmp_path):
    assert dry_run(copy_workflow(tmp_path)) == MINIATURE


def test_paper_dag_is_the_full_grid(tmp_path):
    jobs = dry_run(copy_workflow(tmp_path), "--configfile", "config/paper.yaml")
    assert jobs == {
        "download_source": 12,  # 6 UltraFeedback files + 6 benchmark/judge/template files, once each
        "prepare_data": 1,
        "prepare_bench": 2,
        "build_proposals_off": 1,
        "build_proposals_on": 2,
        "build_targets": 3,
        "build_dataset": 6,
        "train_model": 6,
        "generate_answers": 2 * 3 * 2 * 2,
        "judge_answers": 24,
        "make_report": 1,
        "all": 1,
    }


def test_paper_training_is_launched_with_torchrun_and_zero3(tmp_path):
    import subprocess

    out = subprocess.run(
        [
            "snakemake",
            "results/train_model/llama31-8b/aft_on/model",
            "-n",
            "-p",
            "--configfile",
            "config/paper.yaml",
        ],
        cwd=copy_workflow(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "torchrun --standalone --nproc_per_node=8 -m aft.stages.train_model" in out
    assert "config/deepspeed/zero3.json" in out
    assert "results/build_dataset/llama31-8b/aft_on/train.jsonl" in out
    assert "--base-model meta-llama/Llama-3.1-8B" in out


def test_invalid_config_stops_before_any_job(tmp_path):
    import subprocess

    wf = copy_workflow(tmp_path)
    (wf / "bad.yaml").write_text("train:\n  global_batch_size: 33\n")
    proc = subprocess.run(
        ["snakemake", "-n", "--configfile", "config/config.yaml", "bad.yaml"],
        cwd=wf,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "global_batch_size=33 must be divisible" in proc.stdout + proc.stderr


def test_paper_downloads_read_from_the_network_or_a_mirror(tmp_path):
    import subprocess

    wf = copy_workflow(tmp_path)
    (wf / "mirror.yaml").write_text("sources:\n  mirror_dir: /m\n")
    target = "results/download_source/ultrafeedback/flan.jsonl"
    outs = {}
    for case, extra in (("network", []), ("mirror", ["mirror.yaml"])):
        outs[case] = subprocess.run(
            ["snakemake", target, "-n", "-p", "--configfile", "config/paper.yaml", *extra],
            cwd=wf,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    for out in outs.values():
        assert "-m aft.stages.download_source" in out and "--file flan.jsonl" in out
        assert "evol_instruct.jsonl" not in out  # the job's config holds its own file only
    assert "--local" not in outs["network"] and "--mirror" not in outs["network"]
    assert "--mirror /m/openbmb/UltraFeedback/flan.jsonl" in outs["mirror"]
