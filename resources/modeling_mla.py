# Written by MLA Workbench into every checkpoint it exports (the copy in a model folder is the one that matches it).
"""PyTorch model for the checkpoints MLA Workbench writes: Multi-head Latent Attention in the MHA2MLA layout.

Plain PyTorch, no other package needed:

    import torch
    from modeling_mla import MlaForCausalLM
    model = MlaForCausalLM.from_pretrained("exported-folder")   # float32 on the CPU unless told otherwise
    logits = model(torch.tensor([[1, 345, 67]])).logits

With Hugging Face transformers installed the same classes are a PretrainedConfig / PreTrainedModel pair, and the
folder's config.json names them through ``auto_map``, so that

    AutoModelForCausalLM.from_pretrained("exported-folder", trust_remote_code=True)

loads it (a stock Llama class must not: it would leave k_proj / v_proj randomly initialised, which is why the export
declares its own ``model_type`` and architecture).

Two ways to run an MLA layer, chosen with ``model.set_mla_form(...)`` (or ``mla_form=`` when loading):

* ``"absorbed"`` (the default): the cache holds only the latent(s) and the rotated RoPE keys, per token and layer
  ``d_c + n_kv * r`` values for a joint latent; the up projections are applied to the queries and to the attention
  output instead of to every cached token (method document, section 4).
* ``"expanded"``: keys and values are rebuilt per head and attention runs as ordinary grouped-query attention (the
  cache then holds full keys and values, as the original model did). This is the form to train in.

Both forms compute the same function; they differ only in float rounding.

The layout (method document, section 5): per layer, ``q_proj`` rows are all heads' kept RoPE dims then all heads'
position-free dims; ``k_r_proj`` gives the kept key dims; ``kv_proj.down_kv`` (or ``down_k`` / ``down_v``) the
latent(s); ``kv_proj.up_k`` / ``up_v`` expand them. Inside a head's RoPE block of ``r = 2p`` dims, element ``i`` pairs
with ``i + p`` and rotates at the frequency of original pair ``rope_pairs_kept[layer][kv_head][i]``. Per-layer widths
come from ``mha2mla.latent_dims`` / ``latent_dims_v``. A config without an ``mha2mla`` block is an ordinary
Llama / Mistral / Qwen2 / Qwen3 checkpoint (e.g. the original model, a distillation teacher) and runs as such.

Adding a layout (e.g. DeepSeek-V3's ``kv_a_proj_with_mqa`` / ``kv_b_proj``): write its attention module with the same
``forward(x, positions, cache, layer_index, mask_info)`` contract, add a row to ``_ATTENTION_LAYOUTS`` and teach
``_layout_of`` to recognise its config.
"""

import importlib
import json
import math
import mmap
import os
import struct
import tempfile

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

# Optional packages are imported through importlib: transformers' remote-code loader scans "import" statements and
# refuses to run a file that names a package that is not installed.
try:
    _transformers = importlib.import_module("transformers")
except ImportError:
    _transformers = None
try:
    _safetensors_torch = importlib.import_module("safetensors.torch")
except ImportError:
    _safetensors_torch = None

MODEL_TYPE = "mha2mla"
ARCHITECTURE = "MlaForCausalLM"
FORMS = ("absorbed", "expanded")


class CheckpointError(ValueError):
    """A checkpoint folder or file that cannot be used as it is; the message names the file and the problem."""


# ------------------------------------------------------------------------------------------------------------------
# Architectures: what differs between the Llama-family models, as data (the same table as core/model/architecture.cpp).
# ------------------------------------------------------------------------------------------------------------------

_ARCHITECTURES = {
    # model_type: q/k/v biases always, attention_bias gives q/k/v/o biases, per-head q/k RMSNorm, sliding_window used
    "llama": dict(qkv_bias_always=False, attention_bias_key=True, qk_norm=False, sliding_window=False),
    "mistral": dict(qkv_bias_always=False, attention_bias_key=True, qk_norm=False, sliding_window=True),
    "qwen2": dict(qkv_bias_always=True, attention_bias_key=False, qk_norm=False, sliding_window=False),
    "qwen3": dict(qkv_bias_always=False, attention_bias_key=True, qk_norm=True, sliding_window=False),
}
_HF_CLASSES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
               "Qwen3ForCausalLM": "qwen3"}
_LATENT_METHODS = {"joint": "joint", "split": "split", "only_key": "key", "key": "key", "only_value": "value",
                   "value": "value", "none": "none"}


def _f32(x):
    """Rounds a Python float to float32, so that frequencies are computed as the C++ engine and Hugging Face do."""
    return struct.unpack("f", struct.pack("f", x))[0]


def rope_frequencies(head_dim, theta, scaling=None):
    """Angular frequency of every pair j in [0, head_dim/2) after rope_scaling (default, linear, llama3)."""
    kind = "default"
    if scaling:
        kind = scaling.get("rope_type", scaling.get("type", "default"))
    out = []
    for j in range(head_dim // 2):
        exponent = _f32(_f32(2 * j) / _f32(head_dim))
        w = _f32(1.0 / _f32(_f32(theta) ** exponent))
        if kind == "linear":
            w = _f32(w / float(scaling.get("factor", 1.0)))
        elif kind == "llama3":
            factor = float(scaling.get("factor", 1.0))
            low = float(scaling.get("low_freq_factor", 1.0))
            high = float(scaling.get("high_freq_factor", 4.0))
            original = float(scaling.get("original_max_position_embeddings", 8192))
            wavelength = 2.0 * math.pi / w
            if wavelength > original / low:
                w = _f32(w / factor)
            elif wavelength >= original / high:
                smooth = (original / wavelength - low) / (high - low)
                w = _f32((1.0 - smooth) * w / factor + smooth * w)
        elif kind != "default":
            raise CheckpointError(f"rope_scaling type '{kind}' is not supported (default, linear, llama3)")
        out.append(w)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------------------------------

class _PlainConfig:
    """Stands in for transformers.PretrainedConfig when transformers is not installed: attributes from a dict."""

    model_type = ""

    def __init__(self, **kwargs):
        for key, value in kwargs.items():
            setattr(self, key, value)

    def to_dict(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


if _transformers is not None:
    _ConfigBase = getattr(_transformers, "PretrainedConfig", None) or getattr(_transformers, "PreTrainedConfig")
else:
    _ConfigBase = _PlainConfig


class MlaConfig(_ConfigBase):
    """config.json of a Llama-family checkpoint, with the optional ``mha2mla`` block of an MLA export."""

    model_type = MODEL_TYPE

    def __init__(self, vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=None, head_dim=None, max_position_embeddings=2048,
                 rms_norm_eps=1e-6, rope_theta=10000.0, rope_scaling=None, attention_bias=False, mlp_bias=False,
                 hidden_act="silu", sliding_window=None, tie_word_embeddings=False, mha2mla=None, mla_form="absorbed",
                 initializer_range=0.02, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.head_dim = head_dim if head_dim is not None else hidden_size // num_attention_heads
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.hidden_act = hidden_act
        self.sliding_window = sliding_window
        self.mha2mla = mha2mla
        self.mla_form = mla_form
        self.initializer_range = initializer_range
        # The generation cache of transformers must keep every position: the layers apply any sliding window
        # themselves, and an absorbed layer's cache rows are latents, not keys a window may drop.
        self.layer_types = ["full_attention"] * num_hidden_layers
        # The architecture the layers follow: the source model's (an export keeps it in mha2mla.base_model_type,
        # since its own model_type names this file's classes).
        self.base_model_type = _base_model_type(kwargs.pop("model_type", None), kwargs.get("architectures"), mha2mla)
        kwargs.pop("layer_types", None)
        kwargs.pop("base_model_type", None)
        if _ConfigBase is _PlainConfig:
            kwargs["tie_word_embeddings"] = tie_word_embeddings
            super().__init__(**kwargs)
        else:
            super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)

    @classmethod
    def read_config_file(cls, path):
        """(config, the JSON object as read) of a config.json, checked as the workbench's loader checks it."""
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: config.json must hold a JSON object")
        try:
            config = cls(**data)
        except TypeError as e:
            raise CheckpointError(f"{path}: {e}") from None
        _check_config(config, path)
        return config, data

    @classmethod
    def from_folder(cls, folder):
        return cls.read_config_file(os.path.join(folder, "config.json"))[0]

    if _ConfigBase is _PlainConfig:
        @classmethod
        def from_pretrained(cls, folder, **kwargs):
            return cls.from_folder(folder)


def _base_model_type(model_type, architectures, mha2mla):
    if isinstance(mha2mla, dict) and isinstance(mha2mla.get("base_model_type"), str):
        return mha2mla["base_model_type"]
    if model_type in _ARCHITECTURES:
        return model_type
    if not model_type and architectures:
        return _HF_CLASSES.get(architectures[0], "")
    # An export of an earlier tool version named its source architecture in model_type itself.
    return model_type or ""


def _check_config(config, path):
    arch = _ARCHITECTURES.get(config.base_model_type)
    if arch is None:
        raise CheckpointError(f"{path}: unsupported model type '{config.base_model_type}' "
                              f"(supported: {', '.join(_ARCHITECTURES)})")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size"):
        value = getattr(config, key, None)
        if not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    if config.num_attention_heads % config.num_key_value_heads != 0:
        raise CheckpointError(f"{path}: {config.num_key_value_heads} key/value heads do not divide "
                              f"{config.num_attention_heads} attention heads")
    if config.head_dim % 2 != 0:
        raise CheckpointError(f"{path}: head size {config.head_dim} is odd; RoPE needs pairs of dimensions")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise CheckpointError(f"{path}: hidden_act '{config.hidden_act}' is not supported (only silu / SwiGLU)")
    if getattr(config, "use_sliding_window", False):
        raise CheckpointError(f"{path}: use_sliding_window is set; per-layer sliding windows are not supported")
    rope_frequencies(config.head_dim, config.rope_theta, config.rope_scaling)
    if config.mha2mla is not None:
        _mha2mla_layers(config, path)


def _arch(config):
    return _ARCHITECTURES[config.base_model_type]


def _qkv_bias(config):
    a = _arch(config)
    return a["qkv_bias_always"] or (a["attention_bias_key"] and bool(config.attention_bias))


def _o_bias(config):
    return _arch(config)["attention_bias_key"] and bool(config.attention_bias)


def _sliding_window(config):
    return int(config.sliding_window or 0) if _arch(config)["sliding_window"] else 0


class Mha2MlaLayerLayout:
    """One converted layer as our exporter writes it: kept pairs per KV head, latent method and widths."""

    def __init__(self, kept_pairs, method, latent_k, latent_v):
        self.kept_pairs = kept_pairs  # [kv_head] -> ascending pair indices
        self.method = method          # joint, split, key, value, none
        self.latent_k = latent_k      # joint / split / key: width of the (key) latent
        self.latent_v = latent_v      # split / value: width of the value latent

    @property
    def rope_pairs(self):
        return len(self.kept_pairs[0]) if self.kept_pairs else 0

    @property
    def compresses_keys(self):
        return self.method in ("joint", "split", "key")

    @property
    def compresses_values(self):
        return self.method in ("joint", "split", "value")

    def cache_elements(self, kv_heads, head_dim):
        """Values cached per token in the absorbed form (method document, section 3)."""
        r = 2 * self.rope_pairs
        n = kv_heads * r
        n += {"joint": self.latent_k, "split": self.latent_k + self.latent_v, "key": self.latent_k,
              "value": self.latent_v, "none": 0}[self.method]
        if not self.compresses_keys:
            n += kv_heads * (head_dim - r)
        if not self.compresses_values:
            n += kv_heads * head_dim
        return n


def _mha2mla_layers(config, path="config.json"):
    """The per-layer layouts of the mha2mla block, checked as the C++ loader checks them."""
    block = config.mha2mla
    if not isinstance(block, dict):
        raise CheckpointError(f"{path}: 'mha2mla' must be an object")
    method = _LATENT_METHODS.get(block.get("svd_init_method", "joint"))
    if method is None:
        raise CheckpointError(f"{path}: mha2mla.svd_init_method '{block.get('svd_init_method')}' is not one of "
                              "joint, split, only_key, only_value, none")
    layers, kv, d = config.num_hidden_layers, config.num_key_value_heads, config.head_dim
    pairs = block.get("rope_pairs_kept")
    if not isinstance(pairs, list):
        raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept is missing: the per-layer, per-KV-head kept pairs")
    if len(pairs) != layers:
        raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept has {len(pairs)} layers, expected {layers}")
    low_rank = block.get("low_rank") or 0

    def widths(key, fallback):
        value = block.get(key)
        if value is None:
            return [fallback] * layers
        if not isinstance(value, list) or len(value) != layers or not all(isinstance(x, int) and x >= 0 for x in value):
            raise CheckpointError(f"{path}: mha2mla.{key} must list one non-negative width per layer")
        return value

    key_latent = method in ("joint", "split", "key")
    value_latent = method in ("split", "value")
    latent_k = widths("latent_dims", low_rank * kv if key_latent else 0)
    latent_v = widths("latent_dims_v", low_rank * kv if value_latent else 0)
    out = []
    for l in range(layers):
        heads = pairs[l]
        if not isinstance(heads, list) or len(heads) != kv:
            raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept[{l}] must list {kv} KV heads")
        kept = []
        for h in heads:
            if not isinstance(h, list) or not all(isinstance(j, int) and 0 <= j < d // 2 for j in h):
                raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept[{l}] has a pair index outside [0, {d // 2})")
            if sorted(set(h)) != h:
                raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept[{l}] pair indices must be ascending and distinct")
            if kept and len(h) != len(kept[0]):
                raise CheckpointError(f"{path}: mha2mla.rope_pairs_kept[{l}]: every KV head must keep the same "
                                      "number of pairs")
            kept.append(list(h))
        layout = Mha2MlaLayerLayout(kept, method, latent_k[l] if key_latent else 0, latent_v[l] if value_latent else 0)
        if (key_latent and layout.latent_k <= 0) or (value_latent and layout.latent_v <= 0):
            raise CheckpointError(f"{path}: MLA layer {l} compresses with a latent of width 0")
        out.append(layout)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Building blocks
# ------------------------------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class MlaMLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        bias = bool(config.mlp_bias)
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=bias)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=bias)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class MlaCache:
    """A growing per-layer cache with the interface of transformers' DynamicCache (update / get_seq_length), so that
    the attention code is the same whether transformers' generate() or plain PyTorch drives it. What a layer stores
    depends on its form: full keys and values (expanded, original layers) or latents and RoPE keys (absorbed)."""

    def __init__(self):
        self.keys = []
        self.values = []

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        while len(self.keys) <= layer_idx:
            self.keys.append(None)
            self.values.append(None)
        if self.keys[layer_idx] is None:
            self.keys[layer_idx], self.values[layer_idx] = key_states, value_states
        else:
            self.keys[layer_idx] = torch.cat([self.keys[layer_idx], key_states], dim=-2)
            self.values[layer_idx] = torch.cat([self.values[layer_idx], value_states], dim=-2)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx=0):
        if layer_idx >= len(self.keys) or self.keys[layer_idx] is None:
            return 0
        return self.keys[layer_idx].shape[-2]

    def nbytes(self):
        """Bytes held, summed over layers: what the cache really costs."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)

    def layer_widths(self, layer_idx):
        """Values per token and batch row stored by one layer (keys, values)."""
        k, v = self.keys[layer_idx], self.values[layer_idx]
        return k.shape[1] * k.shape[-1], v.shape[1] * v.shape[-1]


def _rotate(x, freqs, positions):
    """Rotates the half-layout pairs (i, i + p) of the last dim of x [B, T, heads, 2p] at `positions` [B, T];
    freqs [heads, p] gives each head's pair frequencies."""
    p = freqs.shape[-1]
    if p == 0:
        return x
    angle = positions.to(torch.float32)[:, :, None, None] * freqs[None, None, :, :]  # [B, T, heads, p]
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    a, b = x[..., :p], x[..., p:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


class _Masking:
    """Which cached positions each query may see: causal, an optional sliding window, optional padding."""

    def __init__(self, positions, key_positions, window, padding):
        self.positions = positions          # [B, T] query positions
        self.key_positions = key_positions  # [S] positions of the cache rows
        self.window = window
        self.padding = padding              # [B, S] 1 = real token, or None

    def bias(self, dtype):
        q = self.positions[:, :, None]
        k = self.key_positions[None, None, :]
        visible = k <= q
        if self.window > 0:
            visible = visible & (k > q - self.window)
        if self.padding is not None:
            visible = visible & self.padding[:, None, :].bool()
        bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
        return bias.masked_fill(~visible, torch.finfo(dtype).min)  # [B, T, S]


def _softmax(scores, masking):
    """scores [B, kv, g, T, S] already scaled; masked softmax in float32."""
    scores = scores.float() + masking.bias(torch.float32)[:, None, None, :, :]
    return torch.softmax(scores, dim=-1)


class _FrequencyTable:
    """Per-KV-head RoPE frequencies, kept as plain numbers (not a buffer) so that meta-device construction, sharding
    and dtype casts never touch them; materialised per device on first use."""

    def __init__(self, rows):
        self.rows = rows
        self.by_device = {}

    def on(self, device):
        key = str(device)
        if key not in self.by_device:
            self.by_device[key] = torch.tensor(self.rows, dtype=torch.float32, device=device)
        return self.by_device[key]


class DenseAttention(nn.Module):
    """The original attention (no mha2mla block): q/k/v projections, optional q/k norm, full RoPE."""

    def __init__(self, config, layer_index):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        bias = _qkv_bias(config)
        self.q_proj = nn.Linear(config.hidden_size, self.heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, config.hidden_size, bias=_o_bias(config))
        if _arch(config)["qk_norm"]:
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps)
        freqs = rope_frequencies(self.head_dim, config.rope_theta, config.rope_scaling)
        self._freqs = _FrequencyTable([freqs] * self.kv_heads)
        self.layer_index = layer_index

    def forward(self, x, positions, cache, masking):
        B, T, _ = x.shape
        g = self.heads // self.kv_heads
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim)
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        freqs = self._freqs.on(x.device)
        q = _rotate(q, freqs.repeat_interleave(g, dim=0), positions)
        k = _rotate(k, freqs, positions)
        return self.o_proj(_grouped_attention(q, k, v, self.kv_heads, cache, self.layer_index, masking))


def _grouped_attention(q, k, v, kv_heads, cache, layer_index, masking):
    """Ordinary grouped-query attention of q [B, T, H, d] over k, v [B, T, kv, d] (appended to the cache)."""
    B, T, H, d = q.shape
    g = H // kv_heads
    k, v = k.transpose(1, 2), v.transpose(1, 2)  # [B, kv, T, d]
    if cache is not None:
        k, v = cache.update(k, v, layer_index)
    qg = q.view(B, T, kv_heads, g, d).permute(0, 2, 3, 1, 4)  # [B, kv, g, T, d]
    scores = torch.matmul(qg, k[:, :, None].transpose(-1, -2)) / math.sqrt(d)
    weights = _softmax(scores, masking).to(v.dtype)
    out = torch.matmul(weights, v[:, :, None])  # [B, kv, g, T, d]
    return out.permute(0, 3, 1, 2, 4).reshape(B, T, H * d)


class MlaKvProjection(nn.Module):
    """kv_proj: the latent down projection(s) and the up projections, named as the export names them."""

    def __init__(self, config, layout, bias):
        super().__init__()
        hidden, kv, d = config.hidden_size, config.num_key_value_heads, config.head_dim
        r = 2 * layout.rope_pairs
        key_in = value_in = hidden
        if layout.method == "joint":
            self.down_kv = nn.Linear(hidden, layout.latent_k, bias=False)
            key_in = value_in = layout.latent_k
        if layout.method in ("split", "key"):
            self.down_k = nn.Linear(hidden, layout.latent_k, bias=False)
            key_in = layout.latent_k
        if layout.method in ("split", "value"):
            self.down_v = nn.Linear(hidden, layout.latent_v, bias=False)
            value_in = layout.latent_v
        if r < d:
            self.up_k = nn.Linear(key_in, kv * (d - r), bias=bias)
        self.up_v = nn.Linear(value_in, kv * d, bias=bias)


class Mha2MlaAttention(nn.Module):
    """A converted layer in the MHA2MLA layout, run expanded or absorbed."""

    def __init__(self, config, layer_index, layout):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, config.head_dim
        self.layout = layout
        self.layer_index = layer_index
        self.form = config.mla_form
        self.r = 2 * layout.rope_pairs
        bias = _qkv_bias(config)
        hidden = config.hidden_size
        self.q_proj = nn.Linear(hidden, self.heads * self.head_dim, bias=bias)
        if self.r > 0:
            self.k_r_proj = nn.Linear(hidden, self.kv_heads * self.r, bias=bias)
        self.kv_proj = MlaKvProjection(config, layout, bias)
        self.o_proj = nn.Linear(self.heads * self.head_dim, hidden, bias=_o_bias(config))
        all_freqs = rope_frequencies(self.head_dim, config.rope_theta, config.rope_scaling)
        self._freqs = _FrequencyTable([[all_freqs[j] for j in kept] for kept in layout.kept_pairs])

    # The parts of one token's keys and values, from the normalised hidden states x [B, T, hidden].
    def _queries(self, x, positions):
        B, T, _ = x.shape
        H, d, r = self.heads, self.head_dim, self.r
        q = self.q_proj(x)
        q_rope = q[..., :H * r].view(B, T, H, r)
        q_nope = q[..., H * r:].view(B, T, H, d - r)
        freqs = self._freqs.on(x.device)
        q_rope = _rotate(q_rope, freqs.repeat_interleave(H // self.kv_heads, dim=0), positions)
        return q_rope, q_nope

    def _rope_keys(self, x, positions):
        B, T, _ = x.shape
        if self.r == 0:
            return x.new_zeros(B, T, self.kv_heads, 0)
        k = self.k_r_proj(x).view(B, T, self.kv_heads, self.r)
        return _rotate(k, self._freqs.on(x.device), positions)

    def _key_latent(self, x):
        kv = self.kv_proj
        return kv.down_kv(x) if self.layout.method == "joint" else kv.down_k(x)

    def _value_latent(self, x):
        kv = self.kv_proj
        return kv.down_kv(x) if self.layout.method == "joint" else kv.down_v(x)

    def forward(self, x, positions, cache, masking):
        if self.form == "absorbed":
            return self.o_proj(self._absorbed(x, positions, cache, masking))
        return self.o_proj(self._expanded(x, positions, cache, masking))

    def _expanded(self, x, positions, cache, masking):
        B, T, _ = x.shape
        kv, d, r = self.kv_heads, self.head_dim, self.r
        q_rope, q_nope = self._queries(x, positions)
        k_rope = self._rope_keys(x, positions)
        key_in = self._key_latent(x) if self.layout.compresses_keys else x
        value_in = self._value_latent(x) if self.layout.compresses_values else x
        # A dot product does not depend on the order of the dims, so a head's key is its RoPE block followed by its
        # position-free block, matched by the query's own split: no reordering to the original dim order is needed.
        parts = [k_rope]
        if r < d:
            parts.append(self.kv_proj.up_k(key_in).view(B, T, kv, d - r))
        k = torch.cat(parts, dim=-1)
        v = self.kv_proj.up_v(value_in).view(B, T, kv, d)
        q = torch.cat([q_rope, q_nope], dim=-1)
        return _grouped_attention(q, k, v, kv, cache, self.layer_index, masking)

    def _absorbed(self, x, positions, cache, masking):
        """Attention over the cached latents (method document, section 4). The up-projected key bias adds the same
        q_nope . b_k to every score of a query, which the softmax removes, so it is not needed here."""
        B, T, _ = x.shape
        H, kv, d, r = self.heads, self.kv_heads, self.head_dim, self.r
        g = H // kv
        m = self.layout
        q_rope, q_nope = self._queries(x, positions)
        k_rope = self._rope_keys(x, positions).reshape(B, T, kv * r)
        # One cache row per token: [key latent | value latent] or the uncompressed parts, as the method needs.
        stored = []
        if m.compresses_keys:
            stored.append(self._key_latent(x))
        elif r < d:
            stored.append(self.kv_proj.up_k(x))
        if m.method == "split" or m.method == "value":
            stored.append(self._value_latent(x))
        elif not m.compresses_values:
            stored.append(self.kv_proj.up_v(x))
        row = torch.cat(stored, dim=-1) if stored else x.new_zeros(B, T, 0)
        keys, rows = k_rope[:, None], row[:, None]  # [B, 1, T, width]: one "head" of latents
        if cache is not None:
            keys, rows = cache.update(keys, rows, self.layer_index)
        keys, rows = keys[:, 0], rows[:, 0]  # [B, S, width]
        S = keys.shape[1]

        widths = []
        key_width = m.latent_k if m.compresses_keys else (kv * (d - r) if r < d else 0)
        widths.append(key_width)
        if m.method in ("split", "value"):
            widths.append(m.latent_v)
        elif not m.compresses_values:
            widths.append(kv * d)
        pieces = list(torch.split(rows, widths, dim=-1)) if widths else []
        key_part = pieces[0]
        value_part = key_part if m.method == "joint" else pieces[1]

        qg_rope = q_rope.view(B, T, kv, g, r)
        qg_nope = q_nope.view(B, T, kv, g, d - r)
        scores = torch.einsum("btkgr,bskr->bkgts", qg_rope, keys.view(B, S, kv, r))
        if r < d:
            if m.compresses_keys:
                up_k = self.kv_proj.up_k.weight.view(kv, d - r, m.latent_k)
                q_latent = torch.einsum("btkgn,knc->btkgc", qg_nope, up_k)
                scores = scores + torch.einsum("btkgc,bsc->bkgts", q_latent, key_part)
            else:
                scores = scores + torch.einsum("btkgn,bskn->bkgts", qg_nope, key_part.view(B, S, kv, d - r))
        weights = _softmax(scores / math.sqrt(d), masking).to(rows.dtype)
        if m.compresses_values:
            width = value_part.shape[-1]
            context = torch.einsum("bkgts,bsc->btkgc", weights, value_part)
            up_v = self.kv_proj.up_v.weight.view(kv, d, width)
            out = torch.einsum("btkgc,kdc->btkgd", context, up_v)
            if self.kv_proj.up_v.bias is not None:
                out = out + self.kv_proj.up_v.bias.view(kv, 1, d)
        else:
            out = torch.einsum("bkgts,bskd->btkgd", weights, value_part.view(B, S, kv, d))
        return out.reshape(B, T, H * d)


def _layout_of(config):
    """Which attention layout a config describes (a new layout adds a branch here and a row below)."""
    return "mha2mla" if config.mha2mla is not None else "dense"


_ATTENTION_LAYOUTS = {
    "dense": lambda config, index: DenseAttention(config, index),
    "mha2mla": lambda config, index: Mha2MlaAttention(config, index, _mha2mla_layers(config)[index]),
}


class MlaDecoderLayer(nn.Module):
    def __init__(self, config, layer_index):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = _ATTENTION_LAYOUTS[_layout_of(config)](config, layer_index)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = MlaMLP(config)

    def forward(self, h, positions, cache, masking):
        h = h + self.self_attn(self.input_layernorm(h), positions, cache, masking)
        return h + self.mlp(self.post_attention_layernorm(h))


class MlaModel(nn.Module):
    """The decoder stack (tensor names under "model.")."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MlaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.gradient_checkpointing = False

    def forward(self, input_ids=None, inputs_embeds=None, attention_mask=None, position_ids=None, cache=None):
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        B, T = h.shape[:2]
        past = cache.get_seq_length() if cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=h.device)[None].expand(B, T)
        key_positions = torch.arange(past + T, device=h.device)
        padding = None
        if attention_mask is not None and attention_mask.dim() == 2 and not bool(attention_mask.all()):
            padding = attention_mask[:, -(past + T):]
        masking = _Masking(position_ids, key_positions, _sliding_window(self.config), padding)
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and cache is None:
                h = torch.utils.checkpoint.checkpoint(layer, h, position_ids, None, masking, use_reentrant=False)
            else:
                h = layer(h, position_ids, cache, masking)
        return self.norm(h)


# ------------------------------------------------------------------------------------------------------------------
# The causal LM, with or without transformers
# ------------------------------------------------------------------------------------------------------------------

class MlaOutput:
    """What forward returns without transformers (with it: CausalLMOutputWithPast, same fields)."""

    def __init__(self, loss=None, logits=None, past_key_values=None, hidden_states=None):
        self.loss, self.logits, self.past_key_values, self.hidden_states = loss, logits, past_key_values, hidden_states

    def __getitem__(self, key):
        return getattr(self, key)


if _transformers is not None:
    _ModelBase = _transformers.PreTrainedModel
    _GenerationMixin = getattr(_transformers, "GenerationMixin", None)
    _bases = (_ModelBase, _GenerationMixin) if _GenerationMixin is not None and not issubclass(_ModelBase, _GenerationMixin) else (_ModelBase,)
    _Output = importlib.import_module("transformers.modeling_outputs").CausalLMOutputWithPast
    try:
        _init = importlib.import_module("transformers.initialization")  # v5: respects already loaded weights
    except ImportError:
        _init = nn.init
    _TRANSFORMERS_MAJOR = int(_transformers.__version__.split(".")[0])
else:
    _bases = (nn.Module,)
    _Output = MlaOutput
    _init = nn.init
    _TRANSFORMERS_MAJOR = 0


class MlaForCausalLM(*_bases):
    config_class = MlaConfig
    base_model_prefix = "model"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MlaDecoderLayer"]
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"} if _TRANSFORMERS_MAJOR >= 5 else ["lm_head.weight"]

    def __init__(self, config):
        if _transformers is not None:
            super().__init__(config)
        else:
            super().__init__()
        if config.mla_form not in FORMS:
            raise CheckpointError(f"mla_form must be one of {', '.join(FORMS)}, got '{config.mla_form}'")
        self.config = config
        self.model = MlaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if _transformers is not None:
            self.post_init()

    # -- transformers hooks --
    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, (nn.Linear, nn.Embedding)):
            _init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                _init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            _init.ones_(module.weight)

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    # -- forms --
    def set_mla_form(self, form):
        """'absorbed' (latent cache) or 'expanded' (rebuilt keys and values) for every MLA layer."""
        if form not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got '{form}'")
        self.config.mla_form = form
        for layer in self.model.layers:
            if isinstance(layer.self_attn, Mha2MlaAttention):
                layer.self_attn.form = form
        return self

    def kv_cache_elements_per_token(self):
        """Cached values per token summed over layers in the current form (the model's promise; MlaCache.nbytes()
        measures what is really held)."""
        c = self.config
        total = 0
        for layer in self.model.layers:
            attn = layer.self_attn
            if isinstance(attn, Mha2MlaAttention) and attn.form == "absorbed":
                total += attn.layout.cache_elements(c.num_key_value_heads, c.head_dim)
            else:
                total += 2 * c.num_key_value_heads * c.head_dim
        return total

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None,
                labels=None, use_cache=None, return_dict=None, logits_to_keep=0, **kwargs):
        if use_cache is None:
            use_cache = past_key_values is not None
        cache = past_key_values
        if use_cache and cache is None:
            cache = _new_cache()
        if not use_cache:
            cache = None
        h = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                       position_ids=position_ids, cache=cache)
        if isinstance(logits_to_keep, int) and logits_to_keep > 0:
            h = h[:, -logits_to_keep:]
        elif torch.is_tensor(logits_to_keep):
            h = h[:, logits_to_keep]
        logits = self.lm_head(h)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
        return _Output(loss=loss, logits=logits, past_key_values=cache)

    # -- loading and saving without transformers (also used by the recovery recipe) --
    @classmethod
    def from_folder(cls, folder, dtype=torch.float32, device=None, mla_form=None):
        """Loads an exported folder with plain PyTorch: config.json + model.safetensors (or shards and an index)."""
        config, source = MlaConfig.read_config_file(os.path.join(folder, "config.json"))
        if mla_form is not None:
            config.mla_form = mla_form
        model = cls(config)
        model.source_config = source  # config.json as read, written back unchanged by save_folder
        state = read_safetensors_folder(folder)
        model.stored_dtype = state["model.embed_tokens.weight"].dtype if "model.embed_tokens.weight" in state else dtype
        _load_state(model, state, folder)
        model.to(dtype=dtype)
        if device is not None:
            model.to(device)
        return model.eval()

    if _transformers is None:
        @classmethod
        def from_pretrained(cls, folder, dtype=torch.float32, device=None, mla_form=None, torch_dtype=None, **kwargs):
            return cls.from_folder(folder, dtype=torch_dtype or dtype, device=device, mla_form=mla_form)

        def save_pretrained(self, folder, **kwargs):
            save_folder(self, folder)


def _new_cache():
    if _transformers is not None:
        try:
            return importlib.import_module("transformers.cache_utils").DynamicCache()
        except (ImportError, AttributeError):
            pass
    return MlaCache()


def _load_state(model, state, folder):
    expected = dict(model.state_dict())
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
        if unexpected:
            parts.append("unexpected " + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
        raise CheckpointError(f"{folder}: the tensors do not match config.json: {'; '.join(parts)}")
    for name, tensor in state.items():
        want = tuple(expected[name].shape)
        if tuple(tensor.shape) != want:
            raise CheckpointError(f"{folder}: tensor '{name}' has wrong shape; expected {list(want)}, got "
                                  f"{list(tensor.shape)}")
    with torch.no_grad():
        for name, param in model.state_dict(keep_vars=True).items():
            if name in state:
                param.data = state[name].to(param.dtype).clone()
    if model.config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight


# ------------------------------------------------------------------------------------------------------------------
# safetensors: the package when installed, else this small reader and writer (the format: 8-byte little-endian
# header length, a JSON header of {name: {dtype, shape, data_offsets}}, then the raw little-endian data).
# ------------------------------------------------------------------------------------------------------------------

_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}
_NAMES = {v: k for k, v in _DTYPES.items()}


def _safetensors_header(path):
    """(header, data offset, file size) of a .safetensors file, every size and offset checked against the file."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise CheckpointError(f"{path}: too short for a safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", f.read(8))
        if header_len > size - 8 or header_len > 100 * 1024 * 1024:
            raise CheckpointError(f"{path}: header length {header_len} exceeds the file ({size} bytes)")
        try:
            header = json.loads(f.read(header_len).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the header is not a JSON object")
    data_start = 8 + header_len
    data_size = size - data_start
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: tensor '{name}' has no description")
        dtype = _DTYPES.get(info.get("dtype"))
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if dtype is None:
            raise CheckpointError(f"{path}: tensor '{name}' has unsupported dtype {info.get('dtype')!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise CheckpointError(f"{path}: tensor '{name}' has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_size):
            raise CheckpointError(f"{path}: tensor '{name}' has data offsets {offsets!r} outside the data "
                                  f"({data_size} bytes)")
        element = torch.tensor([], dtype=dtype).element_size()
        if offsets[1] - offsets[0] != math.prod(shape) * element:
            raise CheckpointError(f"{path}: tensor '{name}' has {offsets[1] - offsets[0]} bytes, expected "
                                  f"{math.prod(shape) * element} for shape {shape}")
    return header, data_start, size


def read_safetensors(path):
    """{name: tensor} of one .safetensors file (checked first, whichever reader then reads it)."""
    header, data_start, size = _safetensors_header(path)
    if _safetensors_torch is not None:
        try:
            return _safetensors_torch.load_file(path)
        except Exception as e:
            raise CheckpointError(f"{path}: {e}") from None
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = _DTYPES[info["dtype"]], info["shape"]
        count = math.prod(shape)
        if count == 0:
            out[name] = torch.empty(shape, dtype=dtype)
        else:
            out[name] = torch.frombuffer(mapped, dtype=dtype, count=count,
                                         offset=data_start + info["data_offsets"][0]).view(shape)
    return out


def write_safetensors(tensors, path, metadata=None):
    """Writes {name: tensor} (in the given order) to `path`."""
    if _safetensors_torch is not None:
        _safetensors_torch.save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, path,
                                     metadata=metadata or {"format": "pt"})
        return
    header = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor '{name}': dtype {t.dtype} cannot be written")
        same_size = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
        blob = t.view(same_size).numpy().tobytes() if t.dtype != torch.bool else t.to(torch.uint8).numpy().tobytes()
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def read_safetensors_folder(folder):
    """Every tensor of a checkpoint folder: model.safetensors, or the shards listed in model.safetensors.index.json."""
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(index):
        try:
            with open(index, encoding="utf-8") as f:
                weight_map = json.load(f)["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: cannot read the weight map ({e})") from None
        state = {}
        for shard in sorted(set(weight_map.values())):
            if os.path.basename(shard) != shard:
                raise CheckpointError(f"{index}: shard name '{shard}' is not a file in the folder")
            state.update(read_safetensors(os.path.join(folder, shard)))
        return state
    if os.path.isfile(single):
        return read_safetensors(single)
    raise CheckpointError(f"{folder}: no model.safetensors or model.safetensors.index.json")


def save_folder(model, folder, source_folder=None, dtype=None):
    """Writes `model` as a checkpoint folder the workbench and this file reload (see write_checkpoint_folder)."""
    state = dict(model.state_dict())
    config = dict(getattr(model, "source_config", None) or model.config.to_dict())
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    write_checkpoint_folder(state, config, folder, source_folder=source_folder,
                            dtype=dtype or getattr(model, "stored_dtype", None))


def write_checkpoint_folder(state, config, folder, source_folder=None, dtype=None, extra_files=None, recipe_folder=None):
    """Writes config.json (as given: the loaded one keeps every field and the mha2mla block), model.safetensors with
    the tensors `state` names, the other files of `source_folder` (tokenizer, model card, this modeling file, the
    recovery recipe; taken from `recipe_folder` where the source lacks them) and `extra_files` {name: text}. The folder
    appears complete or not at all: it is written under a temporary name beside it and renamed, and an existing
    `folder` is replaced only then."""
    folder = os.path.abspath(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + ".partial-", dir=parent)
    try:
        out_dtype = dtype or next(iter(state.values())).dtype
        tensors = {k: v.detach().to(out_dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}
        config = dict(config)
        config["torch_dtype"] = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[out_dtype]
        write_safetensors(tensors, os.path.join(staging, "model.safetensors"))
        with open(os.path.join(staging, "config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
            f.write("\n")
        if source_folder:
            _copy_companions(source_folder, staging)
        if recipe_folder:
            _copy_missing(recipe_folder, staging, ["modeling_mla.py", "recovery"])
        for name, text in (extra_files or {}).items():
            path = os.path.join(staging, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        _replace_folder(staging, folder)
    except BaseException:
        _remove_tree(staging)
        raise


_WEIGHT_FILES = ("config.json", "model.safetensors", "model.safetensors.index.json")


def _copy_companions(source, destination):
    import shutil
    for name in sorted(os.listdir(source)):
        if name in _WEIGHT_FILES or (name.startswith("model-") and name.endswith(".safetensors")) or name.startswith("."):
            continue
        src = os.path.join(source, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(destination, name), ignore=shutil.ignore_patterns("__pycache__"))
        elif os.path.isfile(src):
            shutil.copy2(src, os.path.join(destination, name))


def _copy_missing(source, destination, names):
    import shutil
    for name in names:
        src, dst = os.path.join(source, name), os.path.join(destination, name)
        if os.path.exists(dst) or not os.path.exists(src):
            continue
        if os.path.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)


def _replace_folder(staging, folder):
    if not os.path.exists(folder):
        os.rename(staging, folder)
        return
    old = tempfile.mkdtemp(prefix="." + os.path.basename(folder) + ".old-", dir=os.path.dirname(folder))
    os.rmdir(old)
    os.rename(folder, old)
    os.rename(staging, folder)
    _remove_tree(old)


def _remove_tree(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)
