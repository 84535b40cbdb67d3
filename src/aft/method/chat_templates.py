"""Project chat templates per model family, with `{% generation %}` markers so TRL can mask the
loss to assistant tokens. Saved with every checkpoint, so vLLM renders prompts the same way."""

from __future__ import annotations

from importlib import resources

# the token that ends an assistant turn in each family's template
END_OF_TURN = {"miniature": "<|end|>", "llama3": "<|eot_id|>", "mistral": "</s>"}


def load_chat_template(family: str) -> str:
    path = resources.files("aft") / "resources" / "chat_templates" / f"{family}.jinja"
    if not path.is_file():
        raise ValueError(f"no chat template for family {family!r}; expected one of {sorted(END_OF_TURN)}")
    return path.read_text()
