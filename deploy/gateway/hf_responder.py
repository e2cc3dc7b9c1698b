"""The real `Responder`: a causal LM from a Hugging Face folder, generating with transformers.

Models load on first use of their version (or `preload`) and stay loaded, at most
``max_loaded`` of them (one per arm is the normal case; the least recently used one goes).
Loading holds a lock so two first requests do not load the same model twice. Generation is
CPU-bound and runs on the caller's thread: the gateway calls `respond` from a small worker
pool (``gateway.generation_workers``), which is what bounds concurrent generations.

The prompt is the conversation through the model's own chat template, cut to the newest
``max_context_tokens`` tokens; the answer is at most ``max_new_tokens`` tokens, greedy when
``temperature`` is 0, else sampled with temperature and top-p.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from deploy.gateway.responder import PolicyUnavailableError
from rluf.schemas import Message
from rluf.settings import GatewaySettings

__all__ = ["HFResponder"]

logger = logging.getLogger(__name__)


class HFResponder:
    """Answers with the causal LM of a policy version.

    Args:
        locate: Maps a policy version to its HF folder (`ArmPolicies.path_of`).
        gateway: Generation limits (max_new_tokens, max_context_tokens, temperature, top_p).
        max_loaded: Models kept in memory at once.
    """

    def __init__(self, locate: Callable[[str], Path], gateway: GatewaySettings, *, max_loaded: int = 2) -> None:
        self._locate = locate
        self._cfg = gateway
        self._max_loaded = max(1, max_loaded)
        self._models: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def preload(self, policy_version: str) -> None:
        """Load `policy_version` now, so the first chat does not wait for it."""
        self._model(policy_version)

    def _model(self, version: str) -> tuple[Any, Any]:
        with self._lock:
            if version in self._models:
                self._models.move_to_end(version)
                return self._models[version]
            path = self._locate(version)
            started = time.perf_counter()
            loaded = _load(path, version)
            self._models[version] = loaded
            while len(self._models) > self._max_loaded:
                old, _ = self._models.popitem(last=False)
                logger.info("unloaded policy %s", old)
            logger.info("loaded policy %s from %s in %.1f s", version, path, time.perf_counter() - started)
            return loaded

    def respond(self, messages: Sequence[Message], policy_version: str) -> str:
        """Generate the answer to `messages` with `policy_version` (blocking, CPU-heavy)."""
        import torch

        model, tokenizer = self._model(policy_version)
        chat = [{"role": m.role, "content": m.content} for m in messages]
        ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True,
                                            return_tensors="pt")["input_ids"]
        ids = ids[:, -self._cfg.max_context_tokens:]
        sample = self._cfg.temperature > 0
        options: dict[str, Any] = {"max_new_tokens": self._cfg.max_new_tokens, "do_sample": sample,
                                   "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                                   else tokenizer.eos_token_id}
        if sample:
            options.update(temperature=self._cfg.temperature, top_p=self._cfg.top_p)
        else:  # a model's generation_config may ask for sampling; greedy means greedy
            options.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **options)
        text: str = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        return text.strip()


def _load(path: Path, version: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a server logs lines, not progress bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise PolicyUnavailableError(version, str(path), f"cannot load the model ({exc})".splitlines()[0]) from exc
    if not getattr(tokenizer, "chat_template", None):
        raise PolicyUnavailableError(version, str(path), "the tokenizer has no chat template")
    model.eval()
    return model, tokenizer
