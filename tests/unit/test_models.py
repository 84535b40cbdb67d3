"""Hub models fetched once (aft.pipeline.models, stage fetch_model) and loaded offline by every other job.

No network here: the fetch is tested on a Hugging Face cache laid out as huggingface_hub writes it (blobs,
snapshots/<commit> symlinks, refs/main), read by huggingface_hub's own snapshot_download with the hub
offline, which is how an air-gapped site fetches too."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from aft.pipeline.config import HubModel, load_config
from aft.pipeline.jobs import JobGraph
from aft.pipeline.models import model_files, model_folder_problem
from tests.conftest import load_yaml

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_model_files_leave_out_weight_formats_no_job_reads():
    llama = [
        ".gitattributes",
        "config.json",
        "generation_config.json",
        "model-00001-of-00004.safetensors",
        "model-00002-of-00004.safetensors",
        "model.safetensors.index.json",
        "original/consolidated.00.pth",
        "original/params.json",
        "original/tokenizer.model",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert model_files(llama) == [f for f in llama if not f.startswith("original/")]  # Meta's own copy
    # Mistral-7B-v0.1 ships both formats: the .bin copy (another 14 GB) is not fetched
    both = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "pytorch_model-00001-of-00002.bin",
        "tokenizer.model",
    ]
    assert model_files(both) == ["config.json", "model-00001-of-00002.safetensors", "tokenizer.model"]
    # an older repository with .bin weights only keeps them; TF/Flax/GGUF exports never
    old = ["config.json", "pytorch_model.bin", "tf_model.h5", "flax_model.msgpack", "model.Q4_K_M.gguf"]
    assert model_files(old) == ["config.json", "pytorch_model.bin"]


def hub_cache(root, repo: str, commit: str, files: dict[str, bytes]):
    """A Hugging Face hub cache holding `repo` at `commit` (refs/main -> commit), as huggingface_hub lays
    it out: content-addressed blobs and a snapshot folder of relative symlinks to them."""
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    for rel, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo_dir / "snapshots" / commit / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    return root


def test_fetch_model_stage_writes_the_folder_jobs_load_from_the_cache_offline(tiny, tmp_path):
    """The stage as the rule runs it, on a cache filled beforehand (HF_HUB_OFFLINE=1: an air-gapped site):
    the model files are linked into the folder, the foreign weights are not, the commit is recorded, and
    the folder loads as the same model."""
    import torch
    from transformers import AutoModelForCausalLM

    files = {p.name: p.read_bytes() for p in tiny["base"].iterdir() if p.is_file()}
    files["original/consolidated.00.pth"] = b"not read by any job"
    cache = hub_cache(tmp_path / "cache", "org/tiny", COMMIT, files)
    out = tmp_path / "results/fetch_model/org/tiny/main/model"
    metrics = out.parent / "metrics.json"
    cfg = json.dumps({"model": {"repo": "org/tiny", "revision": "main"}})
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "MLFLOW_TRACKING_URI": ""}
    env.pop("MLFLOW_TRACKING_URI")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aft.stages.fetch_model",
            "--config",
            cfg,
            "--out",
            str(out),
            "--metrics",
            str(metrics),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == sorted(n for n in files if "/" not in n)
    assert not (out / "original").exists()
    # the folder's files are hard links to the cache's blobs (one copy of the weights on disk)
    weights = next(out.glob("*.safetensors"))
    assert weights.stat().st_nlink == 2 and not weights.is_symlink()
    m = json.loads(metrics.read_text())
    assert m["record"]["commit"] == COMMIT and m["record"]["repo"] == "org/tiny"
    assert m["metrics"]["files"] == len(files) - 1 and m["metrics"]["revision_pinned"] == 0
    assert m["metrics"]["bytes"] == sum(len(v) for k, v in files.items() if "/" not in k)
    fetched = AutoModelForCausalLM.from_pretrained(out)
    original = AutoModelForCausalLM.from_pretrained(tiny["base"])
    for (name, a), (_, b) in zip(fetched.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_fetch_refuses_a_folder_that_is_not_a_model(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from aft.pipeline.models import fetch

    cache = hub_cache(tmp_path / "cache", "org/data", COMMIT, {"README.md": b"# not a model"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError, match=f"org/data@{COMMIT}: the fetched folder has no config.json"):
        fetch(HubModel(repo="org/data", revision="main"), tmp_path / "model", cache_dir=str(cache))
    assert not (tmp_path / "model").exists() and not (tmp_path / ".model.partial").exists()


def test_a_pinned_commit_the_cache_lacks_is_an_error_not_another_commit(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    from aft.pipeline.models import fetch

    cache = hub_cache(tmp_path / "cache", "org/tiny", COMMIT, {"config.json": b"{}"})
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LocalEntryNotFoundError):
        fetch(HubModel(repo="org/tiny", revision="f" * 40), tmp_path / "model", cache_dir=str(cache))


def test_model_folder_problem_names_what_is_wrong(tiny, tmp_path):
    assert model_folder_problem(tiny["base"]) is None
    assert "is not a folder" in model_folder_problem("meta-llama/Llama-3.1-8B")
    assert "has no config.json" in model_folder_problem(tmp_path)


def test_stages_run_with_the_hub_offline(tmp_path):
    """Every stage but the two fetching ones turns the hub off: a hub id fails at once, nothing is
    downloaded on a compute node."""
    code = (
        "import os, sys\n"
        "from aft.pipeline.stage import run_stage\n"
        "def body(a, cfg):\n"
        "    import huggingface_hub.constants as c\n"
        "    from transformers import AutoConfig\n"
        "    print(os.environ['HF_HUB_OFFLINE'], c.HF_HUB_OFFLINE)\n"
        "    try:\n"
        "        AutoConfig.from_pretrained('org/never-downloaded')\n"
        "    except OSError as err:\n"
        "        print('refused:', type(err).__name__)\n"
        "run_stage('probe', None, sys.argv[1:], lambda p: None, {}, body)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MLFLOW_TRACKING_URI")}
    env["HF_HUB_CACHE"] = str(tmp_path / "empty-cache")
    proc = subprocess.run(
        [sys.executable, "-c", code, "--config", "{}", "--metrics", str(tmp_path / "m.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 True" in proc.stdout and "refused: OSError" in proc.stdout


def test_every_hub_model_of_the_paper_config_is_fetched_once_and_loaded_from_its_folder():
    cfg = load_config(load_yaml("config/paper.yaml"))
    assert {k: (m.repo, m.revision) for k, m in cfg.hub_models().items()} == {
        "bases.llama31-8b": ("meta-llama/Llama-3.1-8B", "main"),
        "bases.mistral-7b": ("mistralai/Mistral-7B-v0.1", "main"),
        "targets.model": ("meta-llama/Llama-3.1-70B-Instruct", "main"),
        "reward_models.skywork-8b": ("Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", "main"),
    }
    graph = JobGraph(cfg)
    assert len(graph.fetch_jobs()) == 4
    assert graph.model_folder("bases.llama31-8b") == "results/fetch_model/meta-llama/Llama-3.1-8B/main/model"
    # the jobs that load a base have its fetch job as a parent (so a new revision reruns them)
    for rule, w in [
        ("build_proposals_on_part", {"base": "mistral-7b", "scatteritem": "1-of-4"}),
        ("build_dataset", {"base": "mistral-7b", "variant": "sft"}),
        ("train_model", {"base": "mistral-7b", "variant": "sft", "seed": "42"}),
        ("measure_target_loss", {"base": "mistral-7b"}),
    ]:
        assert ("fetch_model", {"repo": "mistralai/Mistral-7B-v0.1", "revision": "main"}) in graph.parents(
            rule, **w
        )
    teacher = ("fetch_model", {"repo": "meta-llama/Llama-3.1-70B-Instruct", "revision": "main"})
    assert teacher in graph.parents("build_targets_part", pset="off", scatteritem="1-of-8")
    bon = {"base": "llama31-8b", "variant": "aft_on", "seed": "42", "mode": "bon-4", "bench": "gsm8k"}
    rm = ("fetch_model", {"repo": "Skywork/Skywork-Reward-Llama-3.1-8B-v0.2", "revision": "main"})
    assert rm in graph.parents("generate_answers", **bon)
    # a new revision is another folder and another key for every job that loads the model
    raw = load_yaml("config/paper.yaml")
    raw["bases"]["mistral-7b"]["revision"] = "a" * 40
    pinned = JobGraph(load_config(raw), graph.scatter)
    assert (
        pinned.model_folder("bases.mistral-7b")
        == f"results/fetch_model/mistralai/Mistral-7B-v0.1/{'a' * 40}/model"
    )
    for rule, w in [("train_model", {"base": "mistral-7b", "variant": "sft", "seed": "42"})]:
        assert pinned.key(rule, **w) != graph.key(rule, **w)
    assert pinned.key("train_model", base="llama31-8b", variant="sft", seed="42") == graph.key(
        "train_model", base="llama31-8b", variant="sft", seed="42"
    )


def test_local_models_and_endpoint_teachers_are_not_fetched(tiny):
    raw = load_yaml("config/paper.yaml")
    raw["bases"]["mistral-7b"]["model"] = str(tiny["base"])
    raw["targets"]["endpoint"] = load_yaml("config/paper.yaml")["judge"]["endpoint"]
    cfg = load_config(raw)
    assert sorted(cfg.hub_models()) == ["bases.llama31-8b", "reward_models.skywork-8b"]
    graph = JobGraph(cfg)
    assert graph.model_folder("bases.mistral-7b") is None
    assert graph.base_parents("mistral-7b") == []


def test_require_pinned_refuses_unpinned_hub_models():
    raw = load_yaml("config/paper.yaml")
    raw["sources"]["require_pinned"] = True
    for src in raw["sources"].values():  # pin every source so that only the models are loose
        if isinstance(src, dict):
            src["revision"] = "b" * 40 if src["host"] != "pypi" else src["revision"]
            for f in src["files"]:
                f["sha256"] = "c" * 64
    with pytest.raises(ValueError) as err:
        load_config(raw)
    text = str(err.value)
    assert "hub models are not pinned" in text
    for key in ("bases.llama31-8b", "bases.mistral-7b", "targets.model", "reward_models.skywork-8b"):
        assert f"{key}.revision='main'" in text
    for key in ("llama31-8b", "mistral-7b"):
        raw["bases"][key]["revision"] = "d" * 40
    raw["targets"]["revision"] = "e" * 40
    raw["reward_models"]["skywork-8b"]["revision"] = "f" * 40
    assert all(m.pinned for m in load_config(raw).hub_models().values())
