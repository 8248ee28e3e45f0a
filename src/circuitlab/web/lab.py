"""The computations behind the web lab, as plain functions of a model returning JSON-ready dicts.

Prompts are text when the model has a tokenizer, and otherwise token ids separated by spaces (toy models
trained on the tasks have no tokenizer). Every input problem raises `InputError` with a message saying
what was wrong and what would be right; the app turns it into a 422 response.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import torch

from ..analysis import head_census, logit_diff, patch_activation, patch_resid_pre
from ..model import HookedTransformer
from ..tasks import Task
from ..viz import DIVERGING, SEQUENTIAL

MAX_TOP_K = 50


class InputError(ValueError):
    """A request the lab cannot compute, with the reason."""


def _round(x: torch.Tensor, digits: int = 5) -> list:
    return torch.round(x.double(), decimals=digits).tolist()


class Lab:
    """A model served by the web lab, with the census cached after its first computation.

    `census_batch`: sequences per census probe (fewer is faster on large models)."""

    def __init__(
        self,
        model: HookedTransformer,
        name: str = "model",
        kind: str = "model",
        task: Task | None = None,
        census_batch: int = 32,
    ):
        self.model = model.eval()
        self.name, self.kind, self.task, self.census_batch = name, kind, task, census_batch
        self._census: dict[str, Any] | None = None
        self._census_lock = threading.Lock()

    # ---- prompts -------------------------------------------------------------------------------------
    @property
    def has_tokenizer(self) -> bool:
        return self.model.tokenizer is not None

    @property
    def prompt_format(self) -> str:
        cfg = self.model.cfg
        if self.has_tokenizer:
            return f"text (tokenized by the model's tokenizer; at most n_ctx={cfg.n_ctx} tokens)"
        return (
            f"this model has no tokenizer: type token ids separated by spaces, each in [0, {cfg.d_vocab}), "
            f"at most n_ctx={cfg.n_ctx} of them"
        )

    def tokenize(self, prompt: str, what: str = "prompt") -> torch.Tensor:
        """Token ids [pos] of a prompt, checked against the vocabulary and n_ctx."""
        cfg = self.model.cfg
        if not prompt.strip():
            raise InputError(f"the {what} is empty: {self.prompt_format}")
        if self.has_tokenizer:
            tokens = self.model.to_tokens(prompt, truncate=False, move_to_device=False)[0]
        else:
            words = [w for w in re.split(r"[\s,]+", prompt.strip()) if w]
            bad = [w for w in words if not re.fullmatch(r"\d+", w)]
            if bad:
                raise InputError(f"{bad[0]!r} in the {what} is not a token id: {self.prompt_format}")
            ids = [int(w) for w in words]
            out_of_range = [i for i in ids if i >= cfg.d_vocab]
            if out_of_range:
                raise InputError(
                    f"token id {out_of_range[0]} in the {what} is out of range: ids must lie in [0, {cfg.d_vocab})"
                )
            tokens = torch.tensor(ids, dtype=torch.long)
        if len(tokens) > cfg.n_ctx:
            raise InputError(
                f"the {what} is {len(tokens)} tokens long but this model reads at most n_ctx={cfg.n_ctx} tokens: "
                f"remove {len(tokens) - cfg.n_ctx} tokens"
            )
        return tokens

    def token_id(self, text: str, what: str) -> int:
        """One token: a string that is exactly one token (tokenizer), or an id."""
        if self.has_tokenizer:
            if not text:
                raise InputError(f"the {what} is empty: give one token, e.g. ' Hart' (with its leading space)")
            try:
                return self.model.to_single_token(text)
            except ValueError as err:
                raise InputError(f"{what}: {err}") from err
        ids = self.tokenize(text, what)
        if len(ids) != 1:
            raise InputError(f"the {what} must be one token id, got {len(ids)}: {text!r}")
        return int(ids[0])

    def str_tokens(self, ids: torch.Tensor) -> list[str]:
        """The text of each id (the id itself for models without a tokenizer)."""
        flat = ids.reshape(-1).tolist()
        if not self.has_tokenizer:
            return [str(i) for i in flat]
        unique = {i: self.model.tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in set(flat)}
        return [unique[i] for i in flat]

    # ---- endpoints -----------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        cfg = self.model.cfg
        return {
            "name": self.name,
            "kind": self.kind,
            "task": None if self.task is None else self.task.name,
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "n_ctx": cfg.n_ctx,
            "d_vocab": cfg.d_vocab,
            "has_tokenizer": self.has_tokenizer,
            "prompt_format": self.prompt_format,
            "examples": self.examples(),
        }

    def examples(self) -> dict[str, str]:
        """Prompts to start from: text for tokenizer models (Heimersheim's patching pair), else an induction
        sequence [BOS, x, x] and a pair that differs in the token the induction head should copy."""
        if self.has_tokenizer:
            return {
                "prompt": "When Mary and John went to the store, John gave a drink to",
                "clean": "Her name was Alex Hart. Tomorrow at lunch time Alex",
                "corrupted": "Her name was Alex Carroll. Tomorrow at lunch time Alex",
                "answer": " Hart",
                "distractor": " Carroll",
            }
        cfg = self.model.cfg
        n = min(8, (cfg.n_ctx - 1) // 2, cfg.d_vocab - 2)
        if n < 2:
            return {"prompt": "0", "clean": "", "corrupted": "", "answer": "", "distractor": ""}
        perm = (torch.randperm(cfg.d_vocab - 1, generator=torch.Generator().manual_seed(0)) + 1).tolist()
        x, other = perm[:n], perm[n]
        prompt = [0, *x, *x]
        if self.task is not None:  # a real sample of the training task
            prompt = self.task.generate(1, seed=0).tokens[0].tolist()
        join = lambda ids: " ".join(map(str, ids))  # noqa: E731
        return {
            "prompt": join(prompt),
            "clean": join([0, *x, *x[:-1]]),
            "corrupted": join([0, *x[:-1], other, *x[:-1]]),
            "answer": str(x[-1]),
            "distractor": str(other),
        }

    @torch.no_grad()
    def predictions(self, prompt: str, top_k: int = 5) -> dict[str, Any]:
        """Per position: the top-k next-token predictions, and the rank and probability of the token that
        actually comes next (rank 0 = the top prediction, as in TransformerLens and every circuitlab view)."""
        if not 1 <= top_k <= MAX_TOP_K:
            raise InputError(f"top_k={top_k} is invalid: expected 1 to {MAX_TOP_K}")
        tokens = self.tokenize(prompt)
        logits = self.model(tokens[None].to(self.model.device))[0].float().cpu()  # [pos, vocab]
        log_probs = logits.log_softmax(-1)
        top = log_probs.topk(min(top_k, logits.shape[-1]), dim=-1)  # [pos, k]
        nxt = tokens[1:]  # [pos - 1]: the token each position should predict
        nxt_logit = logits[:-1].gather(-1, nxt[:, None])  # [pos - 1, 1]
        rank = (logits[:-1] > nxt_logit).sum(-1)  # [pos - 1]: tokens scored above it
        nxt_logp = log_probs[:-1].gather(-1, nxt[:, None])[:, 0]
        top_text = self.str_tokens(top.indices)
        text = self.str_tokens(tokens)
        k = top.indices.shape[1]
        probs = _round(top.values.exp())
        positions = []
        for p in range(len(tokens)):
            positions.append(
                {
                    "token": text[p],
                    "id": int(tokens[p]),
                    "top": [
                        {"token": top_text[p * k + j], "id": int(top.indices[p, j]), "prob": probs[p][j]}
                        for j in range(k)
                    ],
                    "next": None
                    if p == len(tokens) - 1
                    else {
                        "token": text[p + 1],
                        "id": int(nxt[p]),
                        "rank": int(rank[p]),
                        "prob": round(float(nxt_logp[p].exp()), 5),
                    },
                }
            )
        loss = float(-nxt_logp.mean()) if len(nxt) else None
        return {"tokens": text, "positions": positions, "loss": loss}

    @torch.no_grad()
    def attention(self, prompt: str, layer: int, head: int) -> dict[str, Any]:
        """The attention pattern [query, key] of one head on the prompt."""
        cfg = self.model.cfg
        if not 0 <= layer < cfg.n_layers:
            raise InputError(f"layer={layer} is out of range: this model has layers 0 to {cfg.n_layers - 1}")
        if not 0 <= head < cfg.n_heads:
            raise InputError(f"head={head} is out of range: this model has heads 0 to {cfg.n_heads - 1}")
        tokens = self.tokenize(prompt)
        name = f"blocks.{layer}.attn.hook_pattern"
        _, cache = self.model.run_with_cache(tokens[None].to(self.model.device), names_filter=[name])
        pattern = cache[name][0, head].float().cpu()  # [query, key]
        words, scale = self.str_tokens(tokens), SEQUENTIAL  # the figures' own scale: white at 0
        return {"tokens": words, "layer": layer, "head": head, "pattern": _round(pattern, 4), "colorscale": scale}

    def census(self) -> dict[str, Any]:
        """`head_census` of the model (on its training task when known), computed once."""
        with self._census_lock:
            if self._census is None:
                bos = 0
                if self.has_tokenizer:
                    tok = self.model.tokenizer
                    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
                census = head_census(self.model, task=self.task, batch=self.census_batch, bos=bos)
                self._census = {
                    "clean_loss": census.clean_loss,
                    "heads": [
                        {
                            "label": r.label,
                            "layer": r.layer,
                            "head": r.head,
                            "roles": r.roles,
                            "ablation_loss_increase": r.ablation_loss_increase,
                            "evidence": r.evidence,
                            "scores": r.scores,
                            "baselines": r.baselines,
                        }
                        for r in census.rows
                    ],
                }
            return self._census

    def circuit(self, method: str = "eap-ig") -> dict[str, Any]:
        """The circuit `method` discovers on the lab's task (`circuitlab.analysis.discovery.discover`) with its
        graph figure (plotly JSON)."""
        import json

        from ..analysis.discovery import discover
        from ..analysis.discovery.problems import task_problem
        from ..viz.circuit import circuit_graph

        if self.task is None:
            raise InputError("circuit discovery needs the model's task: serve a run directory (circuitlab serve RUN)")
        problem = task_problem(self.model, self.task, batch=16)
        found = discover(problem, method, steps=10)
        title = f"{method}: {len(found.circuit)} of {found.circuit.graph.n_edges} edges"
        return {
            "task": problem.name,
            "known_circuit": problem.description if problem.true_edges else None,
            **{k: v for k, v in found.to_dict().items() if k != "circuit"},
            "edges": found.circuit.edges,
            "n_graph_edges": found.circuit.graph.n_edges,
            "figure": json.loads(circuit_graph(found.circuit, title=title).to_json()),
        }

    @torch.no_grad()
    def patching(
        self, clean: str, corrupted: str, answer: str, distractor: str, direction: str = "denoise"
    ) -> dict[str, Any]:
        """Residual-stream patching, one (layer, position) at a time, with the logit difference
        logit[answer] - logit[distractor] at the last position as the metric.

        Rows: resid_pre of each block, then resid_post of the last. `normalized` is 0 at the corrupted
        run's logit difference and 1 at the clean run's (null when the two are equal)."""
        if direction not in ("denoise", "noise"):
            raise InputError(f"direction={direction!r} is invalid: expected 'denoise' or 'noise'")
        clean_ids, corrupted_ids = self.tokenize(clean, "clean prompt"), self.tokenize(corrupted, "corrupted prompt")
        if len(clean_ids) != len(corrupted_ids):
            raise InputError(
                f"the clean prompt is {len(clean_ids)} tokens and the corrupted one {len(corrupted_ids)}: they must "
                f"be the same length so positions line up (clean: {self.str_tokens(clean_ids)}, corrupted: "
                f"{self.str_tokens(corrupted_ids)})"
            )
        answer_id, distractor_id = self.token_id(answer, "answer"), self.token_id(distractor, "distractor")
        device = self.model.device
        clean_t, corrupted_t = clean_ids[None].to(device), corrupted_ids[None].to(device)
        metric = logit_diff(answer_id, distractor_id)
        clean_ld, corrupted_ld = float(metric(self.model(clean_t))), float(metric(self.model(corrupted_t)))
        kwargs = dict(direction=direction, progress=False)
        pre = patch_resid_pre(self.model, clean_t, corrupted_t, metric, **kwargs)  # [layer, pos]
        last = self.model.cfg.n_layers - 1
        post = patch_activation(self.model, clean_t, corrupted_t, metric, "resid_post", layers=[last], **kwargs)
        values = torch.cat([pre, post]).float().cpu()  # [layer + 1, pos]
        spread = clean_ld - corrupted_ld
        normalized = None if abs(spread) < 1e-6 else _round((values - corrupted_ld) / spread, 4)
        return {
            "rows": [f"resid_pre {l}" for l in range(last + 1)] + [f"resid_post {last}"],
            "clean_tokens": self.str_tokens(clean_ids),
            "corrupted_tokens": self.str_tokens(corrupted_ids),
            "answer_id": answer_id,
            "distractor_id": distractor_id,
            "clean_logit_diff": round(clean_ld, 5),
            "corrupted_logit_diff": round(corrupted_ld, 5),
            "direction": direction,
            "values": _round(values, 4),
            "normalized": normalized,
            "colorscale": DIVERGING,  # the figures' own scale: white at 0, blue = the clean behaviour
        }
