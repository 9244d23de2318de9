"""The shape rules a job request must meet before it becomes a job.

Separate from ``aitbc.protocol.job`` (the wire types and hashes) because the zk-inference rule needs
``aitbc.protocol.zkml``, which itself builds on the job types: keeping the rule here keeps the import
graph acyclic (job ← zkml ← job_rules).
"""

from __future__ import annotations

from aitbc.protocol.errors import InputTooLarge, InvalidInput
from aitbc.protocol.job import MAX_EMBED_TEXTS, MAX_MESSAGES, MAX_PROMPT_CHARS, JobInput
from aitbc.protocol.zkml import check_zk_inference_texts


def check_job_input(job: JobInput) -> None:
    """Shape rules a request must meet before it becomes a job: ``InvalidInput`` / ``InputTooLarge`` say which."""
    if job.type == "inference":
        if (job.prompt is None) == (job.messages is None):
            raise InvalidInput("an inference job needs exactly one of input.prompt or input.messages")
        if job.texts is not None:
            raise InvalidInput("input.texts is only for embedding jobs")
        if job.prompt is not None and not job.prompt.strip():
            raise InvalidInput("input.prompt is empty")
        if job.messages is not None and not 1 <= len(job.messages) <= MAX_MESSAGES:
            raise InvalidInput(f"input.messages must hold 1..{MAX_MESSAGES} messages")
        size = len(job.prompt or "") + sum(len(m.content) for m in job.messages or [])
    elif job.type == "zk-inference":
        if job.prompt is not None or job.messages is not None:
            raise InvalidInput("a zk-inference job takes input.texts (its vectors) and nothing else")
        try:
            check_zk_inference_texts(job.texts)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        size = sum(len(t) for t in job.texts or [])
    else:
        if job.texts is None or job.prompt is not None or job.messages is not None:
            raise InvalidInput("an embedding job needs input.texts (a list of strings) and nothing else")
        if not 1 <= len(job.texts) <= MAX_EMBED_TEXTS:
            raise InvalidInput(f"input.texts must hold 1..{MAX_EMBED_TEXTS} strings")
        size = sum(len(t) for t in job.texts)
    if size > MAX_PROMPT_CHARS:
        raise InputTooLarge(f"input is {size} characters; the limit is {MAX_PROMPT_CHARS}")
