"""Find the model (local folder, Hugging Face id, ModelScope id) and load it."""
from __future__ import annotations

import ctypes
import gc
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

MODELSCOPE_PREFIX = "modelscope:"


class ModelLoadError(RuntimeError):
    """The model could not be found or loaded; the message says what to do."""


@dataclass
class LoadedModel:
    model: Optional[torch.nn.Module]  # None once unload() freed it; weights() loads it again
    tokenizer: Any             # a transformers PreTrainedTokenizerFast
    path: str                  # what was loaded (local folder or hub id)
    device: torch.device
    eos_ids: List[int]         # generation stops on any of these
    pad_id: int
    vocab_size: int            # width of the logits (may exceed the tokenizer's size)
    context_length: int
    dtype: torch.dtype = torch.float32
    load_weights: Optional[Callable[[], torch.nn.Module]] = None  # loads `model` again after unload()
    weight_format: Optional[str] = None  # bf16-packed, int8, int4; None: torch's own linears

    @property
    def is_loaded(self) -> bool:
        return self.model is not None

    def weights(self) -> torch.nn.Module:
        """The model, loaded again first if unload() freed it (keep-alive: the next request reloads)."""
        if self.model is None:
            if self.load_weights is None:
                raise ModelLoadError("the model was unloaded and cannot be loaded again")
            self.model = self.load_weights()
        return self.model

    def unload(self) -> bool:
        """Free the weights' memory (RAM or VRAM); the tokenizer stays. False if already unloaded."""
        if self.model is None or self.load_weights is None:
            return False
        self.model = None
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        _return_freed_heap()
        return True


def _return_freed_heap() -> None:
    """glibc keeps freed heap memory for reuse: hand it back, so the process's RSS really drops."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # musl and others: no malloc_trim
            pass


def resolve_model(model: str, source: str = "auto") -> str:
    """Local folder as is; `modelscope:ID` or source=modelscope -> downloaded folder; else a HF id."""
    if os.path.isdir(model):
        return model
    if model.startswith(MODELSCOPE_PREFIX):
        model, source = model[len(MODELSCOPE_PREFIX):], "modelscope"
    if source != "modelscope":
        return model  # transformers resolves (and if needed downloads) Hugging Face ids
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise ModelLoadError(
            f"loading {model!r} from ModelScope needs the modelscope package: "
            f"pip install modelscope (or pass a local folder with --model)") from None
    return snapshot_download(model)


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was given but torch sees no CUDA GPU; use --device cpu")
    return torch.device(device)


def cpu_has_fast_bf16() -> bool:
    """oneDNN has bf16 kernels for this CPU (AVX-512 or AMX); without them bf16 is emulated and slow."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the probe
        return False


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":  # bf16 halves the bytes read per step, the bound on a CPU's decode speed
        if device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()):
            return torch.bfloat16
        return torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "float16": torch.float16,
                "float32": torch.float32}[dtype]
    except KeyError:
        raise ModelLoadError(f"unknown dtype {dtype!r}; use auto, bfloat16, float16 or float32") from None


def pick_weight_format(quantize: Optional[str], device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """`auto` (or None): bf16 linears prepacked for oneDNN on a CPU, where that halves the decode step
    (docs/performance.md); torch's own linears elsewhere. `none`: torch's own linears."""
    if quantize in (None, "auto"):
        from .prepack import supported

        return "bf16-packed" if device.type == "cpu" and dtype == torch.bfloat16 and supported() else None
    if quantize == "none":
        return None
    if quantize not in QUANTIZERS:
        raise ModelLoadError(f"unknown weight format {quantize!r}; use auto, none, {', '.join(QUANTIZERS)}")
    return quantize


def load_model(model: str, *, source: str = "auto", device: str = "auto", dtype: str = "auto",
               context_length: Optional[int] = None, quantize: Optional[str] = None) -> LoadedModel:
    path = resolve_model(model, source)
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(f"cannot load model {model!r}: the folder has no config.json "
                             f"(point --model at the folder holding the model's files)")
    dev = pick_device(device)
    if dev.type == "cpu" and sys.platform.startswith("linux"):
        # torch's CPU allocator puts tensors of 2 MiB and more on transparent huge pages when this is set
        # (read at its first large allocation, so before the weights; THP_MEM_ALLOC_ENABLE=0 opts out).
        # A decode step reads every weight once: 151 ms with 4 KiB pages, 133 ms with 2 MiB ones
        # (bf16 Qwen2.5-1.5B, 2-core CPU; docs/performance.md).
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    torch_dtype = pick_dtype(dtype, dev)
    quantize = pick_weight_format(quantize, dev, torch_dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load model {model!r}: {str(exc).splitlines()[0]} "
            f"(pass a local folder, a Hugging Face id, or modelscope:ID)") from None

    def load_weights() -> torch.nn.Module:
        try:
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)  # `dtype`: transformers >= 4.56
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load model {model!r}: {str(exc).splitlines()[0]} "
                f"(pass a local folder, a Hugging Face id, or modelscope:ID)") from None
        # transformers decorates PreTrainedModel.to with @wraps(nn.Module.to), so mypy sees the unbound
        # signature (the device passed where `self` goes); the call itself is ordinary nn.Module.to
        lm.to(dev).eval()  # type: ignore[arg-type]
        if quantize in QUANTIZERS:
            QUANTIZERS[quantize](lm)
        return lm

    lm: Any = load_weights()  # a transformers PreTrainedModel
    vocab_size = lm.get_output_embeddings().out_features  # nn.Linear or its quantized stand-in
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"{model!r} has no fast tokenizer (tokenizer.json), which llguidance needs")
    eos = lm.generation_config.eos_token_id if lm.generation_config is not None else None
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    if not eos_ids:
        raise ModelLoadError(f"{model!r} defines no EOS token in generation_config.json or its tokenizer")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    max_positions = getattr(lm.config, "max_position_embeddings", None) or 4096
    return LoadedModel(model=lm, tokenizer=tokenizer, path=path, device=dev, eos_ids=eos_ids,
                       pad_id=pad_id, vocab_size=vocab_size,
                       context_length=min(context_length or max_positions, max_positions),
                       dtype=torch_dtype, load_weights=load_weights, weight_format=quantize)


def _quantize_int8(lm: torch.nn.Module) -> None:
    from .quant import quantize_int8

    quantize_int8(lm)


def _quantize_int4(lm: torch.nn.Module) -> None:
    from .quant import quantize_int4

    if next(lm.parameters()).device.type != "cpu":
        raise ModelLoadError("--quantize int4 uses torch's CPU kernel; on a GPU use bfloat16 or int8")
    quantize_int4(lm)


def _prepack_bf16(lm: torch.nn.Module) -> None:
    from .prepack import prepack_linears

    if next(lm.parameters()).device.type != "cpu" or next(lm.parameters()).dtype != torch.bfloat16:
        raise ModelLoadError("--quantize bf16-packed is for bfloat16 on a CPU; use --dtype bfloat16 --device cpu")
    prepack_linears(lm)


# weight formats besides the dtype's own: --quantize NAME
QUANTIZERS = {"int8": _quantize_int8, "int4": _quantize_int4, "bf16-packed": _prepack_bf16}
