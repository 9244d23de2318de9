"""The long, coverage-guided fuzz run (by hand; CI runs the short hypothesis versions):

    PYTHONPATH=src:tests .venv/bin/python tests/fuzz/atheris_main.py TARGET -atheris_runs=1000000

TARGET is one of tx_bytes, tx_json, block_bytes, receipt_bytes, receipt_json, rpc (see targets.py). The seeds
of the target start the corpus (in a temporary directory unless one is given after the flags); libFuzzer
prints its progress and, at the end, the number of executions ("Done N runs"). Any exception escaping a
target is a crash: libFuzzer writes the input to ./crash-* and exits non-zero.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["aitbc"]):
    # everything a target reaches, imported here so that its code is instrumented (coverage guidance)
    import aitbc.node.rpc
    import aitbc.node.service
    import aitbc.protocol.job_messages
    import aitbc.protocol.receipt
    import aitbc.protocol.tx  # noqa: F401
    from fuzz.targets import get_target, seeds


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    name, flags = sys.argv[1], sys.argv[2:]
    target = get_target(name)
    corpus = [f for f in flags if not f.startswith("-")]
    if not corpus:
        directory = Path(tempfile.mkdtemp(prefix=f"aitbc-fuzz-{name}-"))
        for i, seed in enumerate(seeds()[name]):
            (directory / f"seed{i}").write_bytes(seed)
        flags = [*flags, str(directory)]
    atheris.Setup([sys.argv[0], *flags], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
