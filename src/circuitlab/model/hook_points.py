"""Hook points: named identity modules through which every activation passes, and the hook manager.

A hook is `fn(activation, hook) -> None | replacement`; `hook` is the `HookPoint`, so `hook.name` says
where it fired. Hooks added inside `hooks(...)`, `run_with_hooks` or `run_with_cache` are removed when
the call ends, also when a hook or the forward raises.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

HookFn = Callable[..., Any]
NameFilter = str | Callable[[str], bool] | Sequence[str] | None
HookSpec = tuple[str | Callable[[str], bool], HookFn]
# Hooks whose position is the third-last dim ([batch, pos, head, d]) for pos_slice. TransformerLens lists the
# first five; its rule slices the head dim of the rotated and per-head-input hooks, which we do not copy.
_PER_HEAD_POS_HOOKS = (
    "hook_q",
    "hook_k",
    "hook_v",
    "hook_z",
    "hook_result",
    "hook_rot_q",
    "hook_rot_k",
    "hook_q_input",
    "hook_k_input",
    "hook_v_input",
    "hook_attn_in",
)


class HookNameError(KeyError, ValueError):
    """A hook or cache name that matches nothing; the message lists the closest valid names."""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown_name_error(name: str, valid: Iterable[str], what: str = "hook point") -> HookNameError:
    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    if not close:  # Fall back to names sharing the last component, e.g. 'hook_pattern'.
        close = [v for v in valid if v.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]][:5]
    hint = f"; closest valid names: {close}" if close else f"; valid names include {valid[:5]}"
    return HookNameError(f"no {what} named {name!r}{hint}")


@dataclass(eq=False)
class _Hook:
    """One added hook; TransformerLens's `LensHandle` names: `.hook.remove()`, `.is_permanent`, `.context_level`."""

    fn: HookFn
    is_permanent: bool
    level: int | None
    point: HookPoint | None = None

    @property
    def context_level(self) -> int | None:
        return self.level

    @property
    def hook(self) -> _Hook:
        """The removable handle (TransformerLens keeps a torch handle here): `handle.hook.remove()`."""
        return self

    def remove(self) -> None:
        if self.point is not None:
            self.point.remove_handle(self)


class HookPoint(nn.Module):
    """Identity module marking an activation. Costs one Python call when nothing is hooked."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self.fwd_hooks: list[_Hook] = []
        self.bwd_hooks: list[_Hook] = []
        self.ctx: dict[str, Any] = {}

    def has_hooks(self) -> bool:
        return bool(self.fwd_hooks or self.bwd_hooks)

    def only_detaching_hooks(self) -> bool:
        """True when every forward hook here keeps only a detached copy (the caching hooks): no gradient can be
        taken through what they saw, so the activation need not lie on the output's autograd path."""
        return all(getattr(h.fn, "detaches", False) for h in self.fwd_hooks)

    def add_hook(
        self,
        fn: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> _Hook:
        if dir not in ("fwd", "bwd"):
            raise ValueError(f"hook dir={dir!r} is invalid: expected 'fwd' or 'bwd'")
        if not callable(fn):
            raise TypeError(f"hook for {self.name!r} must be callable as fn(activation, hook), got {type(fn).__name__}")
        handle = _Hook(fn, is_permanent, level, self)
        hooks = self.fwd_hooks if dir == "fwd" else self.bwd_hooks
        hooks.insert(0, handle) if prepend else hooks.append(handle)
        return handle

    def remove_hooks(self, dir: str = "both", including_permanent: bool = False, level: int | None = None) -> None:
        def keep(h: _Hook) -> bool:
            return (h.is_permanent and not including_permanent) or (level is not None and h.level != level)

        if dir in ("fwd", "both"):
            self.fwd_hooks = [h for h in self.fwd_hooks if keep(h)]
        if dir in ("bwd", "both"):
            self.bwd_hooks = [h for h in self.bwd_hooks if keep(h)]

    def remove_handle(self, handle: _Hook) -> None:
        self.fwd_hooks = [h for h in self.fwd_hooks if h is not handle]
        self.bwd_hooks = [h for h in self.bwd_hooks if h is not handle]

    def clear_context(self) -> None:
        self.ctx = {}  # a new dict, as TransformerLens: a reference taken to the old one keeps its contents

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for h in self.fwd_hooks:
            out = h.fn(x, hook=self)
            if out is not None:
                if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise ValueError(
                        f"hook on {self.name!r} returned {got}; return None or a tensor of shape {tuple(x.shape)}"
                    )
                x = out
        if self.bwd_hooks and x.requires_grad:
            for h in self.bwd_hooks:
                x.register_hook(functools.partial(_call_bwd, h.fn, self))
        return x

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def _call_bwd(fn: HookFn, hook: HookPoint, grad: torch.Tensor) -> torch.Tensor | None:
    out = fn(grad, hook=hook)
    if isinstance(out, tuple):  # TransformerLens's backward hooks return (grad,) as torch module hooks do
        if len(out) != 1:
            raise ValueError(f"backward hook on {hook.name!r} returned a tuple of {len(out)}; return (grad,) or grad")
        out = out[0]
    if out is not None and (not isinstance(out, torch.Tensor) or out.shape != grad.shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"backward hook on {hook.name!r} returned {got}; return None or a gradient {tuple(grad.shape)}"
        )
    return out


class HookedRootModule(nn.Module):
    """Owns the hook points below it: names them, resolves names and filters, adds and removes hooks."""

    hook_dict: dict[str, HookPoint]
    mod_dict: dict[str, nn.Module]

    def setup(self) -> None:
        """Name every HookPoint after its module path; call at the end of `__init__`."""
        self.mod_dict = {}
        self.hook_dict = {}
        for name, module in self.named_modules():
            if name == "":
                continue
            module.name = name if isinstance(module, HookPoint) else getattr(module, "name", name)
            self.mod_dict[name] = module
            if isinstance(module, HookPoint):
                self.hook_dict[name] = module
        self._context_level = 0

    def hook_points(self) -> list[HookPoint]:
        return list(self.hook_dict.values())

    def add_perma_hook(self, name: str | Callable[[str], bool], hook: HookFn, dir: str = "fwd") -> Any:
        """A hook that stays until `reset_hooks(including_permanent=True)` (survives `hooks(...)` and resets)."""
        return self.add_hook(name, hook, dir=dir, is_permanent=True)

    def remove_all_hook_fns(
        self, direction: str = "both", including_permanent: bool = False, level: int | None = None
    ) -> None:
        """Remove hooks (not contexts) from every hook point; permanent ones only with including_permanent."""
        if direction not in ("fwd", "bwd", "both"):
            raise ValueError(f"direction={direction!r} is invalid: expected 'fwd', 'bwd' or 'both'")
        for hp in self.hook_dict.values():
            hp.remove_hooks(direction, including_permanent=including_permanent, level=level)

    def resolve_hook_points(self, name: str | Callable[[str], bool]) -> list[HookPoint]:
        """The hook points a name or a name filter selects; an unknown name raises with the close ones."""
        if isinstance(name, str):
            if name not in self.hook_dict:
                raise unknown_name_error(name, self.hook_dict)
            return [self.hook_dict[name]]
        if callable(name):
            return [hp for n, hp in self.hook_dict.items() if name(n)]
        raise TypeError(f"hook name must be a string or a filter fn(name) -> bool, got {type(name).__name__}")

    def add_hook(
        self,
        name: str | Callable[[str], bool],
        hook: HookFn,
        dir: str = "fwd",
        is_permanent: bool = False,
        level: int | None = None,
        prepend: bool = False,
    ) -> list[tuple[HookPoint, _Hook]]:
        """Attach `hook` to one named hook point, or to every hook point a filter accepts."""
        points = self.resolve_hook_points(name)
        return [
            (hp, hp.add_hook(hook, dir=dir, is_permanent=is_permanent, level=level, prepend=prepend)) for hp in points
        ]

    def reset_hooks(
        self,
        clear_contexts: bool = True,
        direction: str = "both",
        including_permanent: bool = False,
        level: int | None = None,
    ) -> None:
        """Remove non-permanent hooks (all with including_permanent) and, by default, clear hook contexts."""
        self.remove_all_hook_fns(direction, including_permanent=including_permanent, level=level)
        if clear_contexts:
            self.clear_contexts()

    def clear_contexts(self) -> None:
        for hp in self.hook_dict.values():
            hp.clear_context()

    @contextlib.contextmanager
    def hooks(
        self,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
    ) -> Iterator[HookedRootModule]:
        """Context manager: the given hooks are live inside the block and gone after it, even on error."""
        added: list[tuple[HookPoint, _Hook]] = []
        self._context_level += 1
        try:
            for specs, dir in ((fwd_hooks, "fwd"), (bwd_hooks, "bwd")):
                for name, fn in specs:
                    added += self.add_hook(name, fn, dir=dir, level=self._context_level)
            yield self
        finally:
            if reset_hooks_end:
                for hp, handle in added:
                    hp.remove_handle(handle)
            if clear_contexts:
                self.clear_contexts()
            self._context_level -= 1

    def run_with_hooks(
        self,
        *model_args: Any,
        fwd_hooks: Sequence[HookSpec] = (),
        bwd_hooks: Sequence[HookSpec] = (),
        reset_hooks_end: bool = True,
        clear_contexts: bool = False,
        **model_kwargs: Any,
    ) -> Any:
        """Run the model once with temporary hooks. Backward hooks attach to this run's autograd graph,
        so they still fire on a later `.backward()` of its output."""
        with self.hooks(fwd_hooks, bwd_hooks, reset_hooks_end=reset_hooks_end, clear_contexts=clear_contexts):
            return self(*model_args, **model_kwargs)

    def filter_hook_names(self, names_filter: NameFilter) -> list[str]:
        """Names selected by None (all), a name, a list of names, or a filter fn(name) -> bool."""
        if names_filter is None:
            return list(self.hook_dict)
        if isinstance(names_filter, str):
            names_filter = [names_filter]
        if callable(names_filter):
            names = [n for n in self.hook_dict if names_filter(n)]
            if not names:
                raise HookNameError("names_filter matched no hook point; see model.hook_dict for the names")
            return names
        names = list(names_filter)
        for name in names:
            if name not in self.hook_dict:
                raise unknown_name_error(name, self.hook_dict)
        return names

    def get_caching_hooks(
        self,
        names_filter: NameFilter = None,
        incl_bwd: bool = False,
        device: str | torch.device | None = None,
        remove_batch_dim: bool = False,
        cache: dict[str, torch.Tensor] | None = None,
        pos_slice: Any = None,
    ) -> tuple[dict[str, torch.Tensor], list[HookSpec], list[HookSpec]]:
        """Hooks that store detached activations (and gradients, as `name + '_grad'`) into `cache`.

        pos_slice (an int, slice, list of positions, or a `Slice`) keeps only those positions (an int keeps the
        position dim, as TransformerLens's `Slice.unwrap`): the query
        position of scores and patterns, dim -3 of per-head q / k / v / z / result, -2 elsewhere (TransformerLens).
        """
        from .cache import apply_pos_slice  # cache imports this module

        if isinstance(pos_slice, int) and not isinstance(pos_slice, bool):
            pos_slice = [pos_slice]  # as TransformerLens's Slice.unwrap: an int keeps the position dim
        cache = {} if cache is None else cache
        names = self.filter_hook_names(names_filter)

        def store(tensor: torch.Tensor, hook: HookPoint, suffix: str = "") -> None:
            tensor = tensor.detach()
            if remove_batch_dim:
                tensor = tensor[0]
            if pos_slice is not None:
                dim = -3 if hook.name.endswith(_PER_HEAD_POS_HOOKS) else -2
                if hook.name.endswith("hook_tokens"):
                    dim = -1  # [batch, pos]
                if tensor.ndim >= -dim:
                    sliced = getattr(pos_slice, "apply", None)
                    tensor = sliced(tensor, dim=dim) if sliced else apply_pos_slice(tensor, pos_slice, dim=dim)
            cache[hook.name + suffix] = tensor if device is None else tensor.to(device)

        store.detaches = True  # type: ignore[attr-defined]  # see HookPoint.only_detaching_hooks
        store_grad = functools.partial(store, suffix="_grad")
        fwd = [(name, store) for name in names]
        bwd = [(name, store_grad) for name in names] if incl_bwd else []
        return cache, fwd, bwd
