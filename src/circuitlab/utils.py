"""TransformerLens's `utils` under their familiar names (`from circuitlab import utils; utils.get_act_name`).

Same names, argument order and results as `transformer_lens.utils` 2.x. `tokenize_and_concatenate`
needs no `datasets`: it takes a list of strings, a dict / dataset with a text column, or a token tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .model.errors import ShapeError
from .model.factored_matrix import FactoredMatrix
from .model.losses import lm_accuracy, lm_cross_entropy_loss
from .model.masks import get_attention_mask, get_offset_position_ids
from .model.mlp import ACTIVATIONS, gelu_fast, gelu_new, solu
from .model.names import get_act_name
from .model.slice import Slice, SliceInput

USE_DEFAULT_VALUE = None  # "use the model's default" (e.g. prepend_bos), as in TransformerLens
ACTIVATION_FN_DICT = {**ACTIVATIONS, "solu": solu}  # act_fn name -> function (the MLP's own table)

__all__ = [
    "ACTIVATION_FN_DICT",
    "USE_DEFAULT_VALUE",
    "FactoredMatrix",
    "ShapeError",
    "Slice",
    "SliceInput",
    "TokensDataset",
    "calc_fan_in_and_fan_out",
    "composition_scores",
    "gelu_fast",
    "gelu_new",
    "gelu_pytorch_tanh",
    "get_act_name",
    "get_attention_mask",
    "get_corner",
    "get_device",
    "get_nested_attr",
    "get_offset_position_ids",
    "init_kaiming_normal_",
    "init_kaiming_uniform_",
    "init_xavier_normal_",
    "init_xavier_uniform_",
    "is_lower_triangular",
    "is_square",
    "lm_accuracy",
    "lm_cross_entropy_loss",
    "override_or_use_default_flag",
    "override_or_use_default_value",
    "remove_batch_dim",
    "repeat_along_head_dimension",
    "sample_logits",
    "set_nested_attr",
    "solu",
    "test_prompt",
    "to_numpy",
    "tokenize_and_concatenate",
    "transpose",
]


# ---- tensors ------------------------------------------------------------------------------------
def gelu_pytorch_tanh(input: torch.Tensor) -> torch.Tensor:
    """PyTorch's tanh approximation of GELU."""
    return F.gelu(input, approximate="tanh")


def get_corner(tensor: Any, n: int = 3) -> Any:
    """The first n entries along every dimension (a FactoredMatrix's corner of AB, never all of AB)."""
    if isinstance(tensor, FactoredMatrix):
        return tensor.get_corner(n)
    if isinstance(tensor, torch.Tensor | np.ndarray):
        return tensor[tuple(slice(n) for _ in range(tensor.ndim))]
    raise TypeError(f"get_corner takes a tensor, an array or a FactoredMatrix, got {type(tensor).__name__}")


def to_numpy(tensor: Any) -> np.ndarray:
    """A NumPy array from a tensor (detached, on CPU), an array, a list / tuple or a Python scalar."""
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, list | tuple):
        return np.array(tensor)
    if isinstance(tensor, torch.Tensor):
        return tensor.detach().cpu().numpy()
    if isinstance(tensor, int | float | bool | str):
        return np.array(tensor)
    raise ValueError(f"Input to to_numpy has invalid type: {type(tensor)}")


def remove_batch_dim(tensor: torch.Tensor) -> torch.Tensor:
    """Drop a leading dimension of size 1; any other tensor comes back unchanged (as in TransformerLens)."""
    return tensor.squeeze(0) if tensor.shape[0] == 1 else tensor


def transpose(tensor: torch.Tensor) -> torch.Tensor:
    """Swap the last two dimensions, whatever the leading ones."""
    return tensor.transpose(-1, -2)


def is_square(x: torch.Tensor) -> bool:
    return x.ndim == 2 and x.shape[0] == x.shape[1]


def is_lower_triangular(x: torch.Tensor) -> bool:
    return is_square(x) and x.equal(x.tril())


def override_or_use_default_value(default_flag: Any, override: Any | None = None) -> Any:
    """`override` unless it is None, else `default_flag`."""
    return override if override is not None else default_flag


def repeat_along_head_dimension(tensor: torch.Tensor, n_heads: int, clone_tensor: bool = True) -> torch.Tensor:
    """[batch, pos, d_model] -> [batch, pos, n_heads, d_model] (a copy unless `clone_tensor=False`)."""
    repeated = tensor[:, :, None, :].expand(-1, -1, n_heads, -1)
    return repeated.clone() if clone_tensor else repeated


def get_nested_attr(obj: Any, attr_str: str) -> Any:
    """`obj.a.b.c` for "a.b.c"."""
    for attr in attr_str.split("."):
        obj = getattr(obj, attr)
    return obj


def set_nested_attr(obj: Any, attr_str: str, value: Any) -> None:
    """`obj.a.b.c = value` for "a.b.c"."""
    *path, last = attr_str.split(".")
    setattr(get_nested_attr(obj, ".".join(path)) if path else obj, last, value)


override_or_use_default_flag = override_or_use_default_value  # its earlier TransformerLens name


def sample_logits(
    final_logits: torch.Tensor,
    top_k: int | None = None,
    top_p: float | None = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    tokens: torch.Tensor | None = None,
) -> torch.Tensor:
    """One sampled token id per row of final_logits [batch, d_vocab] (TransformerLens's argument order):
    temperature 0 is greedy; top_k / top_p keep the k likeliest tokens / the smallest set holding mass top_p;
    freq_penalty subtracts freq_penalty * (count of each token in `tokens` [batch, pos])."""
    from .loading.generate import sample_logits as _sample

    return _sample(
        final_logits, temperature=temperature, top_k=top_k, top_p=top_p, freq_penalty=freq_penalty, tokens=tokens
    )


def get_device() -> torch.device:
    """The best available device: CUDA, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def composition_scores(left: FactoredMatrix, right: FactoredMatrix, broadcast_dims: bool = True) -> torch.Tensor:
    """||left @ right||_F / (||left||_F ||right||_F) per leading index (TransformerLens's definition).

    With `broadcast_dims`, left's leading dims come first and right's after them: [*left_lead, *right_lead].
    """
    if broadcast_dims:
        l_leading, r_leading = left.ndim - 2, right.ndim - 2
        for i in range(l_leading):
            right = right.unsqueeze(i)
        for i in range(r_leading):
            left = left.unsqueeze(i + l_leading)
    if left.rdim != right.ldim:
        raise ShapeError(
            f"composition scores need left.rdim == right.ldim, shapes were left {tuple(left.shape)}, "
            f"right {tuple(right.shape)}"
        )
    new_right, new_left = right.collapse_r(), left.collapse_l()
    r_norms = new_right.norm(dim=(-2, -1))
    l_norms = new_left.norm(dim=(-2, -1))
    return (new_left @ new_right).norm(dim=(-2, -1)) / r_norms / l_norms


# ---- initialisation (TransformerLens's fan convention: weights are [d_in, d_out]) ----------------
def calc_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) for [d] (1, d), [d_in, d_out] and attention weights [n_heads, d_model, d_head]."""
    shape = tensor.shape
    if len(shape) == 0:
        raise ValueError("Fan in and fan out can not be computed for scalars.")
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 3:
        return shape[1], shape[0] * shape[2]
    raise ValueError(f"Fan in and fan out can not be computed for shape {shape} tensors.")


def init_xavier_uniform_(param: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    bound = gain * np.sqrt(6.0 / (fan_in + fan_out))
    return nn.init.uniform_(param, -bound, bound)


def init_xavier_normal_(param: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    return nn.init.normal_(param, mean=0.0, std=gain * np.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_fan_gain(param: torch.Tensor, a: float, nonlinearity: str, gain: float, mode: str) -> tuple[int, float]:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode={mode!r} is invalid: expected 'fan_in' or 'fan_out'")
    fan_in, fan_out = calc_fan_in_and_fan_out(param)
    return (fan_in if mode == "fan_in" else fan_out), gain * nn.init.calculate_gain(nonlinearity, a)


def init_kaiming_uniform_(
    param: torch.Tensor, a: float = 0, nonlinearity: str = "relu", gain: float = 1.0, mode: str = "fan_in"
) -> torch.Tensor:
    """Uniform with std gain * calculate_gain(nonlinearity, a) / sqrt(fan)."""
    fan, gain = _kaiming_fan_gain(param, a, nonlinearity, gain, mode)
    bound = gain * np.sqrt(3.0 / fan)
    return nn.init.uniform_(param, -bound, bound)


def init_kaiming_normal_(
    param: torch.Tensor, a: float = 0, nonlinearity: str = "relu", gain: float = 1.0, mode: str = "fan_in"
) -> torch.Tensor:
    """Normal with std gain * calculate_gain(nonlinearity, a) / sqrt(fan)."""
    fan, gain = _kaiming_fan_gain(param, a, nonlinearity, gain, mode)
    return nn.init.normal_(param, mean=0.0, std=gain * np.sqrt(1.0 / fan))


# ---- prompts and text ---------------------------------------------------------------------------
def test_prompt(
    prompt: str,
    answer: str | list[str],
    model: Any,
    prepend_space_to_answer: bool = True,
    print_details: bool = True,
    prepend_bos: bool | None = USE_DEFAULT_VALUE,
    top_k: int = 10,
) -> None:
    """Print how the model ranks `answer` after `prompt` (rank, logit, probability, top-k tokens).

    TransformerLens's signature; a list of answers compares their first tokens at the next position.
    The numbers come from `circuitlab.viz.test_prompt`, which also returns them (and draws them).
    """
    from .viz.predictions import test_prompt as run_test

    answers = [answer] if isinstance(answer, str) else list(answer)
    if prepend_space_to_answer:
        answers = [a if a.startswith(" ") else " " + a for a in answers]
    if len(answers) == 1:
        kwargs = dict(top_k=top_k, prepend_bos=prepend_bos, print_details=print_details, return_result=True)
        result = run_test(model, prompt, answers[0], **kwargs)
        if not print_details:  # TransformerLens prints the ranks either way
            print(f"Ranks of the answer tokens: {list(zip(result.answer_tokens, result.ranks, strict=True))}")
        return
    firsts = [model.to_tokens(a, prepend_bos=False)[0, :1].cpu() for a in answers]
    results = [
        run_test(model, prompt, i, top_k=top_k, prepend_bos=prepend_bos, print_details=False, return_result=True)
        for i in firsts
    ]
    if print_details:
        print("Tokenized prompt:", results[0].prompt_tokens)
        print("Tokenized answers:", [model.to_str_tokens(a, prepend_bos=False) for a in answers])
        print("Performance on answer tokens:")
        for r in results:
            rank, logit, prob, word = r.ranks[0], r.logits[0], r.probs[0], r.answer_tokens[0]
            print(f"Rank: {rank: <8} Logit: {logit:5.2f} Prob: {prob:6.2%} Token: |{word}|")
        for j, (word, logit, prob) in enumerate(results[0].top[0]):
            print(f"Top {j}th token. Logit: {logit:5.2f} Prob: {prob:6.2%} Token: |{word}|")
    print(f"Ranks of the answer tokens: {[[(r.answer_tokens[0], r.ranks[0]) for r in results]]}")


test_prompt.__test__ = False  # a library function named test_*: not a pytest test when imported into one


class TokensDataset(torch.utils.data.Dataset):
    """Rows of token ids [n, max_length], read as TransformerLens's tokenized dataset is:
    `ds["tokens"]` (the whole tensor), `ds[i]["tokens"]`, `len(ds)`, and in a `DataLoader`
    (batches are {"tokens": [batch, max_length]})."""

    column_names: ClassVar[list[str]] = ["tokens"]

    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: int | str | slice) -> Any:
        if isinstance(index, str):
            if index != "tokens":
                raise KeyError(f"the tokenized dataset has one column, 'tokens', not {index!r}")
            return self.tokens
        return {"tokens": self.tokens[index]}

    def __repr__(self) -> str:
        return f"TokensDataset(num_rows={len(self)}, max_length={self.tokens.shape[1]})"


def _rows_to_tokens(
    ids: np.ndarray, seq_len: int, pad_id: int | None, bos_id: int | None, add_bos_token: bool
) -> np.ndarray:
    """One flat run of ids -> [n, seq_len] rows (the tail dropped; a short run padded), BOS in front."""
    if len(ids) < seq_len:
        if pad_id is None:
            raise ValueError(f"only {len(ids)} tokens, less than one row of {seq_len}, and no pad or EOS id to pad")
        ids = np.concatenate([ids, np.full(seq_len - len(ids), pad_id, dtype=np.int64)])
    n_rows = len(ids) // seq_len
    rows = ids[: n_rows * seq_len].reshape(n_rows, seq_len)
    if add_bos_token:
        rows = np.concatenate([np.full((n_rows, 1), bos_id, dtype=np.int64), rows], axis=1)
    return rows


def tokenize_and_concatenate(
    dataset: Any,
    tokenizer: Any,
    streaming: bool = False,
    max_length: int = 1024,
    column_name: str = "text",
    add_bos_token: bool = True,
    num_proc: int = 10,
) -> TokensDataset:
    """Tokenize texts, join them with EOS and cut the stream into rows of `max_length` (BOS first).

    `dataset`: a list of strings, a dict or Hugging Face dataset with a `column_name` text column, or a
    tensor / array of token ids (then only cut into rows). As in TransformerLens: texts are taken in
    batches of 1000, each joined by the EOS token, split into 20 chunks at whitespace and tokenized; a
    batch's leftover tokens are dropped. Chunks are tokenized one by one instead of padded together, so
    the tokenizer is never changed (TransformerLens adds a pad token to it) and EOS tokens are kept when
    the pad token is EOS (TransformerLens drops them then). `streaming` and `num_proc` are accepted and
    unused. Returns a `TokensDataset` whose `["tokens"]` is [rows, max_length].
    """
    seq_len = max_length - 1 if add_bos_token else max_length
    if seq_len < 1:
        raise ValueError(f"max_length={max_length} leaves no room for tokens")
    bos_id = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    if add_bos_token and bos_id is None:
        raise ValueError("add_bos_token=True needs a tokenizer with a bos_token_id (or pass add_bos_token=False)")
    if isinstance(dataset, torch.Tensor | np.ndarray):
        ids = to_numpy(dataset).reshape(-1).astype(np.int64)
        pad = _pad_id(tokenizer)
        return TokensDataset(torch.from_numpy(_rows_to_tokens(ids, seq_len, pad, bos_id, add_bos_token)))
    texts = _texts(dataset, column_name)
    if tokenizer is None or getattr(tokenizer, "eos_token", None) is None:
        raise ValueError("tokenize_and_concatenate needs a tokenizer with an EOS token to join the texts")
    pad = _pad_id(tokenizer)
    rows = []
    for start in range(0, len(texts), 1000):  # datasets.map's default batch size
        full_text = tokenizer.eos_token.join(texts[start : start + 1000])
        if not full_text.strip():
            continue
        ids = [i for chunk in _chunks(full_text, 20) for i in tokenizer(chunk)["input_ids"]]
        rows.append(_rows_to_tokens(np.asarray(ids, dtype=np.int64), seq_len, pad, bos_id, add_bos_token))
    if not rows:
        return TokensDataset(torch.zeros(0, max_length, dtype=torch.long))
    return TokensDataset(torch.from_numpy(np.concatenate(rows)))


def _pad_id(tokenizer: Any) -> int | None:
    """What pads a short run: the pad token if the tokenizer has one, else EOS (TransformerLens's rule)."""
    if tokenizer is None:
        return None
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else getattr(tokenizer, "eos_token_id", None)


def _texts(dataset: Any, column_name: str) -> list[str]:
    if isinstance(dataset, str):
        return [dataset]
    if isinstance(dataset, dict) or hasattr(dataset, "column_names"):
        dataset = dataset[column_name]
    texts = list(dataset) if isinstance(dataset, Iterable) else None
    if texts is None or not all(isinstance(t, str) for t in texts):
        raise TypeError(
            "tokenize_and_concatenate takes a list of strings, a dict / dataset with a text column "
            f"{column_name!r}, or a tensor of token ids"
        )
    return texts


def _chunks(text: str, n: int) -> Sequence[str]:
    """`text` in n pieces of about equal length, each extended to the next whitespace (a bounded lookahead)."""
    length = (len(text) - 1) // n + 1
    lookahead = length // 10
    chunks, start = [], 0
    for _ in range(n):
        end = min(start + length, len(text))
        boundary = min(end + lookahead, len(text))
        while end < boundary and not text[end].isspace():
            end += 1
        chunks.append(text[start:end])
        start = end
    return chunks  # empty pieces too: a tokenizer that adds BOS gives them one, as in TransformerLens
