"""``python -m aitbc.miner.llama_server ARGS``: llama-cpp-python's OpenAI-compatible server with
llama.cpp's weight repacking ("extra buffer types") turned off.

The same server as ``python -m llama_cpp.server`` and the same arguments. Why: on CPUs with AMX,
llama-cpp-python 0.3.36's AMX weight layout crashes the process on prompts of 3+ tokens
(docs/miner.md); ``Llama`` has no argument for it, so llama.cpp's default model parameters are
swapped before the server loads its model. Use it behind the miner's ``openai`` backend.
"""

from __future__ import annotations

import importlib
import runpy
from typing import Any


def _without_repacking() -> None:
    lib: Any = importlib.import_module("llama_cpp.llama_cpp")
    original = lib.llama_model_default_params

    def params() -> Any:
        mparams = original()
        mparams.use_extra_bufts = False
        return mparams

    lib.llama_model_default_params = params


if __name__ == "__main__":  # pragma: no cover - exercised by tests/integration/miner (a subprocess)
    _without_repacking()
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
