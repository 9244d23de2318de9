"""Backends by name: ``create_backend("builtin" | "ollama" | "openai", **options)``.

Each backend module is imported only when asked for, so a miner that runs the ``ollama`` backend
never imports llama-cpp or torch. ``options`` are the backend's constructor arguments:

- ``builtin``: ``n_threads=None (automatic), n_ctx=2048, slots=4, text_models=("smollm2-135m-instruct",),
  enable_text=True, enable_embedding=True, gpu_layers=None, omp_spincount=None, flash_attn=True,
  extra_buffers=False``;
- ``ollama``: ``base_url="http://127.0.0.1:11434", timeout=300.0``;
- ``openai``: ``base_url`` (required), ``api_key=None, model_digests=None, model_files=None,
  model_kinds=None, prompt_mode="chat", timeout=300.0``.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

from aitbc.miner.backends.base import InferenceBackend

BackendName = Literal["builtin", "ollama", "openai"]
BACKEND_NAMES: Final[tuple[str, ...]] = get_args(BackendName)


def create_backend(name: BackendName, **options: Any) -> InferenceBackend:
    """A new backend of the named kind; ``ValueError`` for an unknown name or a bad option."""
    try:
        if name == "builtin":
            from aitbc.miner.backends.builtin import BuiltinBackend

            return BuiltinBackend(**options)
        if name == "ollama":
            from aitbc.miner.backends.ollama import OllamaBackend

            return OllamaBackend(**options)
        if name == "openai":
            from aitbc.miner.backends.openai_compat import OpenAICompatBackend

            if "base_url" not in options:
                raise ValueError("the openai backend needs base_url (e.g. http://127.0.0.1:8000/v1)")
            return OpenAICompatBackend(**options)
    except TypeError as e:  # an option the backend does not take
        raise ValueError(f"bad option for backend {name!r}: {e}") from e
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}")
