"""Training jobs: the commitment a miner's receipt makes to a training run (issue 22).

A training receipt is an ordinary ``Receipt`` whose ``output_hash`` is ``compute_commitment_hash`` of a
``TrainingCommitment``: the spec and dataset hashes, the runtime build, the number of steps, and the state
hash after every ``checkpoint_every`` steps (``c_0`` before the first step, then ``c_1 … c_n``; the last one
after the final step even when ``steps`` is not a multiple). The chain checks audits of such a job against
it (``aitbc.chain.training_audit``; docs/verification.md).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from aitbc.protocol import codec
from aitbc.protocol.crypto import sha256
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.merkle import compute_merkle_proof, compute_merkle_root, is_valid_merkle_proof
from aitbc.protocol.types import U64, Address, Hash32, Wire

MAX_CHECKPOINTS: Final = 257
"""Checkpoint hashes one commitment may hold (``c_0`` and 256 segments), so it fits in one audit tx."""


class TrainingCommitment(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    spec_hash: Hash32
    """Hash of the training spec (model, hyper-parameters, seed)."""
    dataset_hash: Hash32
    runtime_build: Annotated[str, Meta(min_length=1, max_length=128), Wire.STR]
    """The runtime that ran it: honest miners of the same build give bit-identical states."""
    steps: U64
    checkpoint_every: U64
    checkpoint_hashes: Annotated[list[Hash32], Meta(max_length=MAX_CHECKPOINTS)]
    """``c_0 … c_n``: state hashes at steps 0, k, 2k, …, and after the last step."""


def compute_commitment_hash(commitment: TrainingCommitment) -> str:
    """What a training receipt's ``output_hash`` holds."""
    return sha256(codec.encode(commitment)).hex()


def count_segments(commitment: TrainingCommitment) -> int:
    """Segments between consecutive checkpoints, or 0 when the commitment is not well formed (no steps,
    ``checkpoint_every`` 0, or a checkpoint count that does not match the steps)."""
    steps, every = commitment.steps, commitment.checkpoint_every
    if steps == 0 or every == 0:
        return 0
    segments = -(-steps // every)
    return segments if len(commitment.checkpoint_hashes) == segments + 1 else 0


def get_segment_steps(commitment: TrainingCommitment, segment: int) -> tuple[int, int]:
    """The first and last step of a segment: it replays steps ``start + 1 … end`` from the state at ``start``."""
    start = segment * commitment.checkpoint_every
    return start, min(start + commitment.checkpoint_every, commitment.steps)


def compute_steps_root(state_hashes: list[str]) -> str:
    """The Merkle root a party commits to in a training dispute: its state hashes at every step of the
    segment, the segment's start included (leaf ``i`` is the state after ``start + i`` steps)."""
    return compute_merkle_root([bytes.fromhex(h) for h in state_hashes]).hex()


def compute_step_proof(state_hashes: list[str], index: int) -> list[str]:
    """The Merkle proof of leaf ``index`` under ``compute_steps_root(state_hashes)``."""
    return [node.hex() for node in compute_merkle_proof([bytes.fromhex(h) for h in state_hashes], index)]


def is_valid_step_proof(root: str, state_hash: str, index: int, count: int, proof: list[str]) -> bool:
    """Whether ``state_hash`` is leaf ``index`` of a ``count``-leaf steps root."""
    path = [bytes.fromhex(node) for node in proof]
    return is_valid_merkle_proof(bytes.fromhex(root), bytes.fromhex(state_hash), index, count, path)


# ---------------------------------------------------------------------------------------- the job's spec

TRAINING_MODELS: Final = ("logreg", "mlp", "cnn", "minilm-pairs")
"""The registry every miner implements (``aitbc.training.models``)."""
OPTIMISERS: Final = ("sgd", "adam", "adamw")
DATASET_FORMATS: Final = ("csv", "npz", "jsonl")
MAX_TRAINING_STEPS: Final = 100_000
MAX_BATCH_SIZE: Final = 1024
MAX_LR_MICRO: Final = 10_000_000
"""A learning rate of at most 10.0 (in millionths)."""
MAX_TRAINING_SEED: Final = 2**31 - 1

TrainingModel = Annotated[str, Meta(pattern=r"^(logreg|mlp|cnn|minilm-pairs)$"), Wire.STR]
Optimiser = Annotated[str, Meta(pattern=r"^(sgd|adam|adamw)$"), Wire.STR]
DatasetFormat = Annotated[str, Meta(pattern=r"^(csv|npz|jsonl)$"), Wire.STR]
TrainingSteps = Annotated[int, Meta(ge=1, le=MAX_TRAINING_STEPS), Wire.U64]


class SealedDataset(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A private dataset: the blob ``blob`` holds the dataset sealed to ``miner`` (``aitbc.protocol.sealed``),
    so only that miner can read it; the job runs on that miner only, and ``TrainingSpec.dataset_hash`` is the
    plaintext's sha256, which the miner checks after opening it and the receipt commits to."""

    miner: Address
    blob: Hash32
    """sha256 of the ciphertext, as the coordinator's blob store names it."""


class TrainingSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a client asks a miner to train: hashed into ``TrainingCommitment.spec_hash``.

    The learning rate is in millionths (``lr_micro=1000`` is 0.001) so that the spec hashes exactly.
    """

    model: TrainingModel
    steps: TrainingSteps
    batch_size: Annotated[int, Meta(ge=1, le=MAX_BATCH_SIZE), Wire.U64] = 32
    lr_micro: Annotated[int, Meta(ge=1, le=MAX_LR_MICRO), Wire.U64] = 10_000
    optimiser: Optimiser = "adam"
    seed: Annotated[int, Meta(ge=0, le=MAX_TRAINING_SEED), Wire.U64] = 0
    checkpoint_every: Annotated[int, Meta(ge=1, le=MAX_TRAINING_STEPS), Wire.U64] = 10
    dataset_hash: Hash32
    """sha256 of the dataset's bytes, as the coordinator's blob store names it (of the plaintext when sealed)."""
    dataset_format: DatasetFormat
    sealed_dataset: SealedDataset | None = None
    """Set for a private dataset: the coordinator holds only its ciphertext (docs/training.md)."""


def check_training_spec(spec: TrainingSpec) -> None:
    """Rules across fields (``InvalidInput`` says which): at most ``MAX_CHECKPOINTS`` checkpoints (so a
    commitment fits one audit tx), and a dataset format the model trains on."""
    segments = -(-spec.steps // spec.checkpoint_every)
    if segments + 1 > MAX_CHECKPOINTS:
        least = -(-spec.steps // (MAX_CHECKPOINTS - 1))
        raise InvalidInput(
            f"{spec.steps} steps with a checkpoint every {spec.checkpoint_every} make {segments + 1} checkpoints; "
            f"the limit is {MAX_CHECKPOINTS} (checkpoint_every >= {least})"
        )
    if spec.model == "minilm-pairs" and spec.dataset_format != "jsonl":
        raise InvalidInput("minilm-pairs trains on sentence pairs: dataset_format must be jsonl")
    if spec.model != "minilm-pairs" and spec.dataset_format == "jsonl":
        raise InvalidInput(f"{spec.model} trains on a table: dataset_format must be csv or npz")


def get_dataset_blob(spec: TrainingSpec) -> str:
    """The blob a miner fetches for the job's dataset: the sealed one, else the plain dataset itself."""
    return spec.dataset_hash if spec.sealed_dataset is None else spec.sealed_dataset.blob


def get_output_blobs(output: TrainingOutput) -> list[str]:
    """The blobs a training result names: weights, loss curve and the committed checkpoints."""
    return [output.weights_blob, output.losses_blob, *output.checkpoint_blobs]


def compute_spec_hash(spec: TrainingSpec) -> str:
    """What ``TrainingCommitment.spec_hash`` holds."""
    return sha256(codec.encode(spec)).hex()


class TrainingOutput(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a training job delivers (``JobOutput.training``): the receipt's ``output_hash`` is the
    commitment's hash; the weights (safetensors) and the loss curve (JSON) are blobs on the coordinator."""

    commitment: TrainingCommitment
    weights_blob: Hash32
    losses_blob: Hash32
    final_loss_micro: U64 = 0
    """The last step's loss in millionths, for display."""
    checkpoint_blobs: Annotated[list[Hash32], Meta(max_length=MAX_CHECKPOINTS)] = msgspec.field(default_factory=list)
    """The committed checkpoints' states (``dump_state`` bytes) as blobs, in the commitment's order: what an
    auditor replays a segment from (its state hash is checked before use; docs/verification.md)."""


def get_commitment_problem(spec: TrainingSpec, commitment: TrainingCommitment) -> str | None:
    """Why ``commitment`` cannot be a run of ``spec`` (None: its shape fits; the values are the audit's)."""
    if commitment.spec_hash != compute_spec_hash(spec):
        return "the commitment is to another training spec"
    if commitment.dataset_hash != spec.dataset_hash:
        return "the commitment is to another dataset"
    if (commitment.steps, commitment.checkpoint_every) != (spec.steps, spec.checkpoint_every):
        return "the commitment's steps or checkpoint interval are not the spec's"
    if count_segments(commitment) == 0:
        return "the commitment does not hold one checkpoint per segment and the initial state"
    return None
