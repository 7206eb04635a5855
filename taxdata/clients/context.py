"""A context that fits: what each request needs (instructions + source part + reply cap), the one
``num_ctx`` an Ollama-style server gets for the whole run, and the source size that leaves room.

Sizes are planned in tokens from character counts at :data:`CHARS_PER_TOKEN` (3: dense text,
tables and figures, takes about 3 characters a token in common tokenizers; prose takes more, so
the plan errs on the side of room). The server still has the last word: a prompt that did not fit
after all is detected from its answer (taxdata.clients.answers) and never used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from taxdata.errors import PreflightError

CHARS_PER_TOKEN = 3.0
NUM_CTX_STEP = 1024  # num_ctx is rounded up to this (servers allocate in such steps anyway)
TEMPLATE_TOKENS = 64  # the chat template's own tokens around the messages
MIN_SOURCE_TOKENS = 256  # below this a source part would say nothing useful


def tokens_of(chars: int) -> int:
    """The planned token count of ``chars`` characters."""
    return math.ceil(chars / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class ContextNeed:
    """What one kind of request needs besides its source: its instructions and its reply cap
    (tokens), the source part size the user asked for (``--max-chars``, characters), and the
    room a re-ask adds (the reply shown back and the errors; planned in when the context has
    it, else a re-ask that does not fit is caught like any overflow)."""

    instructions: int
    reply: int
    source_chars: int
    reask: int = 0

    def merged(self, other: "ContextNeed") -> "ContextNeed":
        """One need covering both (a pipeline with several kinds of request)."""
        return ContextNeed(max(self.instructions, other.instructions),
                           max(self.reply, other.reply),
                           max(self.source_chars, other.source_chars),
                           max(self.reask, other.reask))

    @property
    def tokens(self) -> int:
        return (self.instructions + self.reply + self.reask + TEMPLATE_TOKENS
                + tokens_of(self.source_chars))


def num_ctx_for(need: ContextNeed, model_limit: int | None) -> int:
    """The ``num_ctx`` to send for the whole run: the need rounded up, at most the model's."""
    planned = math.ceil(need.tokens / NUM_CTX_STEP) * NUM_CTX_STEP
    return min(planned, model_limit) if model_limit else planned


def source_chars(window: int | None, need: ContextNeed, where: str) -> int:
    """The largest source part (characters) that fits ``window`` tokens beside the instructions
    and the reply cap; the requested size when the window is unknown. PreflightError when the
    window cannot hold a useful part at all."""
    if window is None:
        return need.source_chars
    room = window - need.instructions - need.reply - TEMPLATE_TOKENS
    if room - need.reask >= MIN_SOURCE_TOKENS * 4:
        room -= need.reask  # room for a re-ask too, where the context has it
    if room < MIN_SOURCE_TOKENS:
        raise PreflightError(
            f"the context of {window} tokens at {where} cannot hold the instructions "
            f"(~{need.instructions} tokens), the reply cap ({need.reply} tokens) and a source part "
            f"- raise the server's context size (or TAXDATA_NUM_CTX) to at least "
            f"{need.instructions + need.reply + TEMPLATE_TOKENS + MIN_SOURCE_TOKENS * 4}")
    return min(need.source_chars, int(room * CHARS_PER_TOKEN))


def overflowed(prompt_tokens: int | None, completion_tokens: int | None,
               window: int | None) -> bool:
    """Whether a reply's usage figures show the context was too small: the prompt filled it (the
    server dropped its start, as Ollama does) or prompt and reply together ran past it (the
    server shifted the context mid-reply, dropping the instructions)."""
    if window is None or prompt_tokens is None:
        return False
    return prompt_tokens >= window or prompt_tokens + (completion_tokens or 0) > window
