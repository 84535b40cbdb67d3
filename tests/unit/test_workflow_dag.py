"""The DAG as Snakemake resolves it (dry runs: seconds, no job runs)."""

import pytest

from tests.conftest import MINIATURE_JOBS, copy_workflow, dry_run, job_dir

MINIATURE = MINIATURE_JOBS | {"all": 1}


def test_miniature_dag(tmp_path):
    assert dry_run(copy_workflow(tmp_path)) == MINIATURE


def test_paper_dag_is_the_full_grid(tmp_path):
    jobs = dry_run(copy_workflow(tmp_path), "--configfile", "config/paper.yaml")
    assert jobs == {
        # 6 UltraFeedback files + 7 benchmark/judge/template files + GSM8K, IFEval and 4 punkt_tab files
        "download_source": 19,
        # the two bases, the 70B teacher and best-of-N's reward model, each once (loaded from the folder)
        "fetch_model": 4,
        "prepare_data": 1,
        "prepare_bench": 4,
        "build_proposals_off": 1,
        "build_proposals_on_part": 2 * 4,  # on_policy.num_jobs scatter jobs per base
        "build_proposals_on": 2,  # their gathers
        "build_targets_part": 3 * 8,  # targets.num_jobs scatter jobs per proposal set
        "build_targets": 3,
        "build_dataset": 6,
        "train_model": 6,
        # bases x variants x (direct, agg) x benchmarks, then the scaling sweep for AFT-on-policy: 4
        # propose-and-aggregate settings on AlpacaEval 2 and GSM8K, 3 majority votes on GSM8K, 3 best-of-N
        # on both (with a hub reward model: no training job), both bases
        "generate_answers": 2 * 3 * 2 * 4 + 2 * (4 * 2 + 3 + 3 * 2),
        "judge_answers": 82,
        "measure_target_loss": 2,  # §6.1, one a base
        "make_report": 1,
        "all": 1,
    }


def test_paper_training_is_launched_with_torchrun_and_zero3(tmp_path):
    import subprocess

    model = job_dir("train_model", "config/paper.yaml", base="llama31-8b", variant="aft_on") + "/model"
    out = subprocess.run(
        [
            "snakemake",
            model,
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
    data = job_dir("build_dataset", "config/paper.yaml", base="llama31-8b", variant="aft_on")
    assert f"--data {data}/train.jsonl" in out and "--config" in out and '"seed":42' in out
    assert "--base-model results/fetch_model/meta-llama/Llama-3.1-8B/main/model " in out


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


@pytest.mark.parametrize(
    ("overlay", "message"),
    [
        ("inference:\n  temperature: 0.0\n", "temperature=0 (greedy) with n=5"),
        ("on_policy:\n  num_samples: 2\n", "< proposals.num_proposals = 4"),
        (
            "dataset:\n  template_file: config/prompts/icl_miniature.txt\n",
            "differs from dataset.template_file",
        ),
    ],
    ids=["greedy-with-n", "too-few-samples", "template-mismatch"],
)
def test_semantic_config_errors_stop_snakemake_before_any_job(tmp_path, overlay, message):
    import subprocess

    wf = copy_workflow(tmp_path)
    (wf / "bad.yaml").write_text(overlay)
    proc = subprocess.run(
        ["snakemake", "-n", "--configfile", "config/config.yaml", "bad.yaml"],
        cwd=wf,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr
    assert "Job stats" not in proc.stdout + proc.stderr


def test_a_local_checkpoint_is_loaded_as_it_is_and_a_hub_id_from_its_fetched_folder(tmp_path):
    wf = copy_workflow(tmp_path)
    (wf / "ck").mkdir()
    (wf / "ck.yaml").write_text(
        "checkpoints:\n  mini:\n    aft_off: {model: ./ck, revision: null}\n"
        f"    aft_on: {{model: org/released-model, revision: {PIN}}}\n"  # the miniature requires pins
    )
    jobs = dry_run(wf, "--configfile", "config/config.yaml", "ck.yaml")
    assert jobs["train_model"] == 1  # only sft is trained
    answers = job_dir(
        "generate_answers", "config/config.yaml", "ck.yaml", root=wf, variant="aft_off", mode="direct"
    )
    out = dry_run_text(wf, "--configfile", "config/config.yaml", "ck.yaml", "--", f"{answers}/answers.jsonl")
    block = job_blocks(out, "generate_answers")[0]
    assert "input: " in block and "ck" in block.split("input: ", 1)[1].splitlines()[0]
    assert "--model ./ck" in block and "fetch_model" not in out
    assert jobs["fetch_model"] == 1
    hub = job_dir(
        "generate_answers", "config/config.yaml", "ck.yaml", root=wf, variant="aft_on", mode="direct"
    )
    out = dry_run_text(wf, "--configfile", "config/config.yaml", "ck.yaml", "--", f"{hub}/answers.jsonl")
    (block,) = job_blocks(out, "generate_answers")
    folder = f"results/fetch_model/org/released-model/{PIN}/model"
    assert folder in block.split("input: ", 1)[1].splitlines()[0] and f"--model {folder} " in block


PIN = "0123456789abcdef0123456789abcdef01234567"
# the flags by which a stage is handed a model to load
MODEL_FLAGS = ("--model", "--base-model", "--tokenizer", "--teacher-model", "--reward-model")
MODEL_FOLDERS = ("fetch_model", "build_base", "train_model", "train_reward_model", "convert_checkpoint")


def test_paper_jobs_load_models_only_from_folders_made_in_the_dag(tmp_path):
    """Every model a paper job loads is a folder one of its inputs names, written by a job of the DAG
    (fetched from the hub once, or trained): no job is handed a hub id."""
    import re

    out = dry_run_text(copy_workflow(tmp_path), "--configfile", "config/paper.yaml")
    fetched = {b.split("--out ")[1].split()[0] for b in job_blocks(out, "fetch_model")}
    assert fetched == {
        f"results/fetch_model/{repo}/main/model"
        for repo in (
            "meta-llama/Llama-3.1-8B",
            "mistralai/Mistral-7B-v0.1",
            "meta-llama/Llama-3.1-70B-Instruct",
            "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2",
        )
    }
    loaded: dict[str, int] = {}
    for block in re.split(r"\n(?:local)?rule ", out)[1:]:
        rule = block.split(":", 1)[0]
        if rule == "build_proposals_on":  # the gather: the base names its shards' context, nothing loads it
            continue
        for flag in MODEL_FLAGS:
            for folder in re.findall(rf"{flag} (\S+)", block):
                inputs = block.split("input: ", 1)[1].splitlines()[0].split(", ")
                assert folder in inputs, (rule, flag, folder)
                assert folder.split("/")[1] in MODEL_FOLDERS, (rule, flag, folder)
                if folder.startswith("results/fetch_model/"):
                    loaded[rule] = loaded.get(rule, 0) + 1
    assert "--revision" not in out
    # the teacher in each of 24 target parts; each base in its 4 proposal parts, 3 datasets (its
    # tokenizer), 3 trainings and §6.1's job; best-of-N's reward model in its 12 answer jobs
    assert loaded == {
        "build_targets_part": 24,
        "build_proposals_on_part": 2 * 4,
        "build_dataset": 2 * 3,
        "train_model": 2 * 3,
        "measure_target_loss": 2,
        "generate_answers": 12,
    }


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


def job_resources(out: str, rule: str) -> dict[str, str]:
    """The `resources:` line of the first `rule` job in a dry run's output, as a dict."""
    return block_resources(out.split(f"rule {rule}:", 1)[1])


def block_resources(block: str) -> dict[str, str]:
    """The `resources:` line of one job's dry-run block, as a dict."""
    line = next(x for x in block.splitlines() if x.strip().startswith("resources:"))
    return dict(kv.split("=", 1) for kv in line.split("resources:", 1)[1].strip().split(", "))


def dry_run_text(wf, *args: str) -> str:
    import subprocess

    proc = subprocess.run(["snakemake", "-n", "-p", *args], cwd=wf, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_paper_jobs_ask_for_the_configured_resources(tmp_path, monkeypatch):
    monkeypatch.setenv("AFT_SLURM_GPU_PARTITION", "gpu-h100")
    out = dry_run_text(copy_workflow(tmp_path), "--configfile", "config/paper.yaml")
    train = job_resources(out, "train_model")
    assert train["gpu"] == "8" and train["tasks_per_gpu"] == "0"  # one torchrun per job
    assert (train["cpus_per_task"], train["mem_mb"], train["runtime"]) == ("64", "480000", "1440")
    assert "nodes" not in train and "mpi" not in train
    assert job_resources(out, "build_targets_part")["gpu"] == "4"  # the 70B teacher's tensor parallelism
    assert job_resources(out, "build_proposals_on_part")["gpu"] == "1"
    for gather in ("build_targets", "build_proposals_on"):  # assembling the parts' shards needs no GPU
        assert "gpu" not in job_resources(out, gather), gather
    assert job_resources(out, "generate_answers")["gpu"] == "1"
    for cpu_only in ("prepare_data", "build_dataset", "judge_answers", "make_report"):
        assert "gpu" not in job_resources(out, cpu_only), cpu_only
    # every GPU job on the site's GPU partition, no other job there
    blocks = out.split("\nrule ")[1:]
    for block in blocks:
        res = block_resources(block) if "resources:" in block else {}
        on_gpu = res.get("slurm_partition") == "gpu-h100"
        assert on_gpu == ("gpu" in res or "gres" in res), block.split(":", 1)[0]
    assert sum("slurm_partition=gpu-h100" in b for b in blocks) > 0


def test_two_node_training_runs_one_torchrun_per_node_under_srun(tmp_path):
    wf = copy_workflow(tmp_path)
    (wf / "two_nodes.yaml").write_text(
        "train:\n  num_gpus: 16\n  num_nodes: 2\n  per_device_batch_size: 2\n"
        "  global_batch_size: 128\nresources:\n  gpu_model: h100\n"
    )
    target = job_dir(
        "train_model", "config/paper.yaml", "two_nodes.yaml", root=wf, base="llama31-8b", variant="sft"
    )
    out = dry_run_text(wf, f"{target}/model", "--configfile", "config/paper.yaml", "two_nodes.yaml")
    train = job_resources(out, "train_model")
    assert (train["nodes"], train["tasks"], train["mpi"], train["gres"]) == ("2", "2", "srun", "gpu:h100:8")
    assert "gpu" not in train  # --gpus=16 would let SLURM spread them unevenly
    assert (
        "srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1"
        " python -m aft.train.launch --nproc-per-node=8 -m aft.stages.train_model"
    ) in out
    assert job_resources(out, "build_targets_part")["gpu_model"] == "h100"  # every GPU job, typed
    assert "gpu_model" not in job_resources(out, "build_dataset")  # CPU jobs ask for no GPU


def test_miniature_asks_for_no_gpu(tmp_path):
    out = dry_run_text(copy_workflow(tmp_path))
    for rule in MINIATURE:
        if rule != "all":
            res = job_resources(out, rule)
            assert "gpu" not in res and "gres" not in res, rule


def job_blocks(out: str, rule: str) -> list[str]:
    """The dry-run blocks (rule line to shell command) of every `rule` job."""
    return [b.split("\n\n", 1)[0] for b in out.split(f"rule {rule}:\n")[1:]]


def test_paper_targets_scatter_over_num_jobs_and_gather_in_one_job(tmp_path):
    """Snakemake's scattergather: each part job writes its declared part file in its own folder, the
    gather reads them all, on CPU; --set-scatter changes the number of parts."""
    wf = copy_workflow(tmp_path)
    target = job_dir("build_targets", "config/paper.yaml", pset="off") + "/targets.jsonl"
    out = dry_run_text(wf, target, "--configfile", "config/paper.yaml")
    items = [f"{i}-of-8" for i in range(1, 9)]
    parts = [
        job_dir("build_targets_part", "config/paper.yaml", pset="off", scatteritem=item) + "/part.json"
        for item in items
    ]
    scatter = job_blocks(out, "build_targets_part")
    assert sorted(b.split("--part ")[1].split()[0] for b in scatter) == sorted(items)
    for block in scatter:  # each writes its own part file, nothing in another rule's folder
        item = block.split("--part ")[1].split()[0]
        part = next(p for p in parts if f"/{item}/" in p)
        assert f"output: {part}, {part.removesuffix('part.json')}metrics.json" in block
        assert f"--out {part}" in block and "results/build_targets/" not in block.split("output:")[1]
        assert block_resources(block)["gpu"] == "4"
    (gather,) = job_blocks(out, "build_targets")
    inputs = gather.split("input: ", 1)[1].splitlines()[0].split(", ")
    assert set(parts) <= set(inputs)  # the gather waits for every part
    assert "--parts " + " ".join(parts) in gather
    folder = target.removesuffix("targets.jsonl")
    assert f"output: {folder}targets.jsonl, {folder}metrics.json" in gather
    assert "gpu" not in block_resources(gather)  # a plain CPU job

    # the number of parts from the command line, without touching the config
    # (a gather of 3 parts is another job than a gather of 8: its key, so its folder, differs)
    three = dry_run_text(wf, "--configfile", "config/paper.yaml", "--set-scatter", "build_targets=3")
    three_off = [b for b in job_blocks(three, "build_targets_part") if "/off/" in b]
    assert sorted(b.split("--part ")[1].split()[0] for b in three_off) == [
        "1-of-3",
        "2-of-3",
        "3-of-3",
    ]
    # a teacher that needs no model makes no parts: one CPU job
    (wf / "oracle.yaml").write_text("targets:\n  teacher: best_rated\n")
    jobs = dry_run(wf, "--configfile", "config/paper.yaml", "oracle.yaml")
    assert "build_targets_part" not in jobs and jobs["build_targets"] == 3


def test_answers_spread_over_num_jobs_gpu_parts_and_gather_on_cpu(tmp_path):
    wf = copy_workflow(tmp_path)
    (wf / "parts.yaml").write_text("inference:\n  num_jobs: 3\n")
    w = {"base": "llama31-8b", "variant": "aft_on", "mode": "bon-4", "bench": "gsm8k"}
    target = job_dir("generate_answers", "config/paper.yaml", "parts.yaml", root=wf, **w) + "/answers.jsonl"
    out = dry_run_text(wf, target, "--configfile", "config/paper.yaml", "parts.yaml")
    scatter = job_blocks(out, "generate_answers_part")
    assert sorted(b.split("--part ")[1].split()[0] for b in scatter) == ["1-of-3", "2-of-3", "3-of-3"]
    for block in scatter:  # each loads the model and the reward model on its GPU
        assert block_resources(block)["gpu"] == "1" and "--reward-model results/fetch_model/" in block
    (gather,) = job_blocks(out, "generate_answers")
    parts = [b.split("--out ")[1].split()[0] for b in scatter]
    assert "--parts " + " ".join(sorted(parts)) in gather and "gpu" not in block_resources(gather)
    # one job otherwise (the paper config), on a GPU
    one = job_dir("generate_answers", "config/paper.yaml", root=wf, **w) + "/answers.jsonl"
    (block,) = job_blocks(dry_run_text(wf, one, "--configfile", "config/paper.yaml"), "generate_answers")
    assert "--parts" not in block and block_resources(block)["gpu"] == "1"


def test_a_site_profile_overrides_what_the_config_sizes(tmp_path):
    """CPUs, memory and runtime come from config resources.rules (validated with the run's config); a
    site's profile or command line (`set-resources`) still wins, as Snakemake documents."""
    out = dry_run_text(
        copy_workflow(tmp_path),
        "--configfile",
        "config/paper.yaml",
        "--set-resources",
        "train_model:mem_mb=123000",
        "train_model:runtime=99",
        "--",
        job_dir("train_model", "config/paper.yaml", base="llama31-8b", variant="sft") + "/model",
    )
    train = job_resources(out, "train_model")
    assert (train["mem_mb"], train["runtime"], train["gpu"]) == ("123000", "99", "8")  # GPUs: the config's
