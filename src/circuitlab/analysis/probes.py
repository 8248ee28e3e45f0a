"""Linear probes on cached activations, and probe directions as interventions.

A `LinearProbe` is a multinomial logistic regression from an activation [d_model] to a label for each
of several outputs at once (e.g. each square of a board: empty / mine / theirs): logits
[outputs, classes] = x @ weight + bias, with weight [d_model, outputs, classes] in the activation's own
space (inputs are standardised while fitting, and the scaling is folded back), so probe directions can
be added to the residual stream as they are.

`train_linear_probe` fits one (full-batch L-BFGS with L2 regularisation); `probe_layers` caches the
activations of a model at several hook points, splits games into train / test, and fits and scores
one probe per hook point; run it on `random_init_like(model)` for the baseline a probe reaches
without any training of the model. `run_with_intervention` adds vectors to, or projects directions
out of, an activation while the model runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..model import HookedTransformer
from ..table import Table, TableView

IGNORE = -1  # label value for (row, output) pairs that no probe should be scored on


@dataclass
class LinearProbe:
    """logits [..., outputs, classes] = acts [..., d_model] @ weight + bias."""

    weight: torch.Tensor  # [d_model, outputs, classes]
    bias: torch.Tensor  # [outputs, classes]

    @property
    def n_outputs(self) -> int:
        return self.weight.shape[1]

    @property
    def n_classes(self) -> int:
        return self.weight.shape[2]

    def logits(self, acts: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...d,doc->...oc", acts.to(self.weight), self.weight) + self.bias

    def predict(self, acts: torch.Tensor) -> torch.Tensor:
        """[..., outputs] the most likely class of each output."""
        return self.logits(acts).argmax(-1)

    def accuracy(self, acts: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """[outputs] fraction of rows classified right (labels [rows, outputs]; IGNORE entries skipped)."""
        labels = _as_2d(labels).to(self.weight.device)
        scored = labels != IGNORE
        right = (self.predict(acts) == labels) & scored
        return right.sum(0) / scored.sum(0).clamp(min=1)

    def direction(self, output: int, to_class: int, from_class: int) -> torch.Tensor:
        """[d_model]: moving along it raises logit(to_class) - logit(from_class) of `output` the fastest."""
        return self.weight[:, output, to_class] - self.weight[:, output, from_class]

    def directions(self, output: int) -> torch.Tensor:
        """[classes - 1, d_model]: the directions that change the class of `output` (class 0 against each other)."""
        return torch.stack([self.direction(output, c, 0) for c in range(1, self.n_classes)])


def _as_2d(labels: torch.Tensor) -> torch.Tensor:
    return labels.unsqueeze(-1) if labels.dim() == 1 else labels


def train_linear_probe(
    acts: torch.Tensor,
    labels: torch.Tensor,
    n_classes: int | None = None,
    weight_decay: float = 1e-3,
    max_iter: int = 150,
) -> LinearProbe:
    """Fit a multinomial logistic-regression probe: acts [rows, d_model] -> labels [rows, outputs] (or [rows]).

    Full-batch L-BFGS on the mean cross-entropy over scored (row, output) pairs plus
    `weight_decay` * ||W||^2 on standardised inputs. Labels equal to IGNORE (-1) are not scored.
    """
    if acts.dim() != 2:
        raise ValueError(f"acts must be [rows, d_model], got shape {tuple(acts.shape)}")
    labels = _as_2d(labels).long()
    if labels.shape[0] != acts.shape[0]:
        raise ValueError(
            f"acts has {acts.shape[0]} rows but labels has {labels.shape[0]}: expected one label row per row"
        )
    n_classes = n_classes or int(labels.max()) + 1
    if int(labels.max()) >= n_classes or int(labels.min()) < IGNORE:
        raise ValueError(f"labels must lie in [0, {n_classes}) or be {IGNORE} (ignored)")
    x = acts.detach().float()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std  # [rows, d_model] standardised
    n_out = labels.shape[1]
    w = torch.zeros(x.shape[1], n_out, n_classes, requires_grad=True)
    b = torch.zeros(n_out, n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = torch.einsum("nd,doc->noc", z, w) + b  # [rows, outputs, classes]
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
        loss = loss + weight_decay * w.pow(2).sum() / n_out
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    w_raw = (w / std[:, None, None]).detach()  # fold the standardisation into the probe
    b_raw = (b - torch.einsum("d,doc->oc", mean / std, w)).detach()
    return LinearProbe(w_raw, b_raw)


@dataclass(repr=False)  # the repr is TableView's
class ProbeSweep(TableView):
    """Probes at several hook points: accuracies [hook, output] on train and held-out test rows."""

    hook_names: list[str]
    probes: dict[str, LinearProbe]
    train_acc: torch.Tensor  # [hook, output]
    test_acc: torch.Tensor  # [hook, output]
    majority_acc: torch.Tensor  # [output]: test accuracy of always guessing the most common train label
    n_train: int
    n_test: int
    extras: dict = field(default_factory=dict)

    @property
    def mean_test_acc(self) -> torch.Tensor:
        """[hook] test accuracy averaged over outputs."""
        return self.test_acc.mean(1)

    @property
    def best(self) -> tuple[str, float]:
        """The hook point with the highest mean test accuracy, and that accuracy."""
        i = int(self.mean_test_acc.argmax())
        return self.hook_names[i], float(self.mean_test_acc[i])

    def table(self) -> Table:
        """One row per hook point: mean train and test accuracy over the outputs."""
        rows = [
            {"hook": n, "train_acc": float(self.train_acc[i].mean()), "test_acc": float(self.test_acc[i].mean())}
            for i, n in enumerate(self.hook_names)
        ]
        return Table(rows, ["hook", "train_acc", "test_acc"], title="linear probes per hook point")

    def summary(self) -> str:
        hook, acc = self.best
        majority = float(self.majority_acc.mean())
        return (
            f"ProbeSweep over {len(self.hook_names)} hook points ({self.n_train} train / {self.n_test} test rows): "
            f"best {hook} test accuracy {acc:.3f} (majority class {majority:.3f})"
        )


def resid_hook_names(model: HookedTransformer) -> list[str]:
    """The residual stream after the embeddings and after every block."""
    return ["blocks.0.hook_resid_pre", *(f"blocks.{l}.hook_resid_post" for l in range(model.cfg.n_layers))]


@torch.no_grad()
def cache_activations(
    model: HookedTransformer, tokens: torch.Tensor, hook_names: list[str], chunk: int = 256
) -> dict[str, torch.Tensor]:
    """{hook: [batch, pos, ...]} activations, run in chunks of rows, kept on the CPU."""
    out: dict[str, list[torch.Tensor]] = {n: [] for n in hook_names}
    for i in range(0, tokens.shape[0], chunk):
        _, cache = model.run_with_cache(tokens[i : i + chunk], names_filter=hook_names, return_cache_object=False)
        for n in hook_names:
            out[n].append(cache[n].cpu())
    return {n: torch.cat(v) for n, v in out.items()}


def split_rows(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random train / test indices of `n` rows (games), the test set `test_fraction` of them."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction={test_fraction} is invalid: expected a fraction in (0, 1)")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = max(1, round(n * test_fraction))
    if n_test >= n:
        raise ValueError(f"{n} rows are too few to hold out {test_fraction:.0%} and still train on some")
    return perm[n_test:], perm[:n_test]


def probe_layers(
    model: HookedTransformer,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor,
    n_classes: int | None = None,
    hook_names: list[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    weight_decay: float = 1e-3,
    max_iter: int = 150,
) -> ProbeSweep:
    """Fit and score one probe per hook point (default: the residual stream after each layer).

    tokens [batch, pos]; labels [batch, pos, outputs] (or [batch, pos]); mask [batch, pos] which
    positions to use. Games (rows of `tokens`) are split into train and test, so no test position
    comes from a game seen in training.
    """
    labels = labels.unsqueeze(-1) if labels.dim() == 2 else labels
    if labels.shape[:2] != tokens.shape or mask.shape != tokens.shape:
        raise ValueError(
            f"labels {tuple(labels.shape)} and mask {tuple(mask.shape)} must match tokens {tuple(tokens.shape)} "
            "in [batch, pos]"
        )
    hook_names = hook_names or resid_hook_names(model)
    n_classes = n_classes or int(labels.max()) + 1
    train_rows, test_rows = split_rows(tokens.shape[0], test_fraction, seed)
    acts = cache_activations(model, tokens, hook_names)
    mask = mask.cpu().bool()
    labels = labels.cpu().long()
    y_train, y_test = labels[train_rows][mask[train_rows]], labels[test_rows][mask[test_rows]]
    probes, train_acc, test_acc = {}, [], []
    for name in hook_names:
        a = acts[name].flatten(2).float()  # per-head activations flatten to one vector per position
        x_train, x_test = a[train_rows][mask[train_rows]], a[test_rows][mask[test_rows]]
        probe = train_linear_probe(x_train, y_train, n_classes, weight_decay=weight_decay, max_iter=max_iter)
        probes[name] = probe
        train_acc.append(probe.accuracy(x_train, y_train))
        test_acc.append(probe.accuracy(x_test, y_test))
    counts = F.one_hot(y_train.clamp(min=0), n_classes).mul((y_train != IGNORE)[..., None]).sum(0)  # [out, cls]
    majority = counts.argmax(-1)
    majority_acc = ((y_test == majority) & (y_test != IGNORE)).sum(0) / (y_test != IGNORE).sum(0).clamp(min=1)
    return ProbeSweep(
        hook_names, probes, torch.stack(train_acc), torch.stack(test_acc), majority_acc, len(y_train), len(y_test)
    )


def random_init_like(model: HookedTransformer, seed: int = 12345) -> HookedTransformer:
    """A freshly initialised model of the same shape: the baseline a probe reaches with no training."""
    return HookedTransformer(dataclasses.replace(model.cfg, seed=seed)).to(model.device).eval()


# ---- interventions ----


def _orthonormal(directions: torch.Tensor) -> torch.Tensor:
    """[d_model, k] orthonormal basis of the span of directions [k, d_model]."""
    q, r = torch.linalg.qr(directions.T.double())
    keep = r.diagonal().abs() > 1e-8 * r.diagonal().abs().max().clamp(min=1e-30)
    return q[:, keep]


def run_with_intervention(
    model: HookedTransformer,
    tokens: torch.Tensor,
    hook_name: str,
    add: torch.Tensor | None = None,
    project_out: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits [batch, pos, vocab] with the activation at `hook_name` changed, at `positions` [batch] (one
    position per row) or at every position when None.

    add: [d_model] or [batch, d_model], added. project_out: [k, d_model] or [batch, k, d_model]
    directions whose span is removed from the activation (x - Q Q^T x; per-row directions must be linearly
    independent); projection happens before adding.
    """
    batch = tokens.shape[0]
    rows = torch.arange(batch)

    def basis_of(dirs: torch.Tensor) -> torch.Tensor:  # [batch, d_model, k] orthonormal columns
        if dirs.dim() == 2:
            return _orthonormal(dirs)[None].expand(batch, -1, -1)
        return torch.linalg.qr(dirs.transpose(1, 2).double()).Q  # per-row directions, batched QR

    basis = basis_of(project_out.to(model.device)) if project_out is not None else None
    vec = None if add is None else (add if add.dim() == 2 else add[None].expand(batch, -1)).to(model.device)

    def hook(x: torch.Tensor, hook: object) -> torch.Tensor:
        x = x.clone()
        sel = x[rows, positions] if positions is not None else x  # [batch, d] or [batch, pos, d]
        if basis is not None:
            q = basis.to(x.dtype)
            coef = torch.einsum("b...d,bdk->b...k", sel, q)
            sel = sel - torch.einsum("b...k,bdk->b...d", coef, q)
        if vec is not None:
            sel = sel + (vec if positions is not None else vec[:, None, :]).to(x.dtype)
        if positions is not None:
            x[rows, positions] = sel
            return x
        return sel

    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=[(hook_name, hook)])


def steering_vectors(
    probe: LinearProbe, acts: torch.Tensor, outputs: torch.Tensor, to_class: int, margin: float = 3.0
) -> torch.Tensor:
    """[rows, d_model] vectors that, added to acts [rows, d_model], make the probe read `to_class` for
    output `outputs[row]` by `margin` over every other class: each round steps along the direction from the
    strongest other class to `to_class`, just far enough to open that margin (zero where it already holds)."""
    rows = torch.arange(acts.shape[0])
    weight = probe.weight[:, outputs].permute(1, 2, 0)  # [rows, classes, d_model]
    push = torch.zeros_like(acts, dtype=weight.dtype)
    for _ in range(4 * probe.n_classes):  # a few rounds; each fixes the current strongest rival
        logits = probe.logits(acts + push)[rows, outputs]  # [rows, classes]
        rival = logits.clone()
        rival[:, to_class] = -torch.inf
        rival_class = rival.argmax(-1)
        need = (margin - (logits[:, to_class] - rival.max(-1).values)).clamp(min=0)  # [rows]
        if float(need.max()) <= 1e-6:
            break
        direction = weight[:, to_class] - weight[rows, rival_class]  # [rows, d_model]
        push = push + (need / direction.pow(2).sum(-1).clamp(min=1e-12))[:, None] * direction * 1.01
    return push
