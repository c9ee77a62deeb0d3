"""What checking every string of a request costs the API (WireModel: valid Unicode, no NUL).

Validates the same ``POST /v1/runs/{run}/samples`` bodies with ``SampleBatch`` as the API
does now, and with the schema as it was before strings were checked (the 64 KiB limit
and the NUL check on prompt/completion/reference only), interleaved in one run; prints
both rates and their ratio, for ASCII text (the fast path) and text with accents.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from _stack import table, text
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from judgeserve.schema import MAX_TEXT_BYTES, SampleBatch

ROUNDS = 15
REPEAT = 10  # validations per timing
SAMPLES = 1000


def _limit(value: str) -> str:  # the text check as it was
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise ValueError("too long")
    if "\x00" in value:
        raise ValueError("NUL")
    return value


OldText = Annotated[str, AfterValidator(_limit)]
OldShort = Annotated[str, StringConstraints(max_length=256)]


class _Before(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    prompt: OldText
    completion: OldText
    reference: OldText | None = None
    probe_id: OldShort | None = None
    tags: dict[OldShort, OldShort] = Field(default_factory=dict)


class BatchBefore(BaseModel):
    model_config = ConfigDict(extra="forbid")
    step: int = Field(ge=0, le=2**53)
    checkpoint: OldShort | None = None
    rubrics: list[OldShort] | None = None
    expected: int | None = Field(None, ge=1, le=10**7)
    samples: list[_Before] = Field(min_length=1, max_length=1000)


def body(accents: bool) -> Any:
    def t(n: int, i: int) -> str:
        s = text(n, i)
        return s.replace("a", "á").replace("e", "é") if accents else s

    return json.loads(json.dumps({
        "step": 1,
        "samples": [
            {"id": f"s{i}", "prompt": t(30, i), "completion": t(300, i), "tags": {"split": "heldout"}}
            for i in range(SAMPLES)
        ],
    }))


def rate(model: type[BaseModel], data: Any) -> float:
    t0 = time.perf_counter()
    for _ in range(REPEAT):
        model.model_validate(data)
    return REPEAT * SAMPLES / (time.perf_counter() - t0)


def main() -> None:
    rows = [("text", "now (samples/s)", "before (samples/s) · cost of the checks")]
    for accents in (False, True):
        data = body(accents)
        now, before = [], []
        for _ in range(ROUNDS):  # interleaved: both see the same machine load
            now.append(rate(SampleBatch, data))
            before.append(rate(BatchBefore, data))
        # The best round of each: on a shared machine, the others measure the neighbours.
        c, u = max(now), max(before)
        rows.append(("accented" if accents else "ASCII", f"{c:,.0f}", f"{u:,.0f} · now {u / c:.2f}x the time"))
    table(rows)


if __name__ == "__main__":
    main()
