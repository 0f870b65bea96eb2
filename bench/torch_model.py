"""The NDT of SPEC §2 in PyTorch, with the SPEC §2 parameter names (state_dict() names are exactly
the safetensors names of ndt checkpoints and reference fixtures), and the readers for those files.

Used by torch_ndt.py (timing, fixture and loss checks). Only torch and numpy are needed.
"""

import json
import math
import struct

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SCHEMES = ["co-smooth", "forward", "inter-region", "intra-region"]


class UserError(Exception):
    """A problem with a file or flag the user gave; printed without a traceback, exit 1."""

# ----------------------------------------------------------------------------------------------
# safetensors, read with numpy (the format is an 8-byte header length, a JSON header, raw data)

_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path):
    """Returns ({name: np.ndarray}, {metadata key: str}) of a safetensors file."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from e
    if len(raw) < 8:
        raise UserError(f"{path}: not a safetensors file (shorter than its 8-byte header length)")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise UserError(f"{path}: truncated safetensors header ({n} bytes announced)")
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError as e:
        raise UserError(f"{path}: safetensors header is not JSON: {e}") from e
    meta = header.pop("__metadata__", None) or {}
    data = memoryview(raw)[8 + n :]
    tensors = {}
    for name, info in header.items():
        dt = info.get("dtype")
        shape = info.get("shape")
        begin, end = info.get("data_offsets", (0, -1))
        if end > len(data) or begin > end:
            raise UserError(f"{path}: tensor '{name}' lies outside the file (truncated?)")
        buf = data[begin:end]
        if dt == "BF16":
            u16 = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dt in _ST_DTYPES:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            raise UserError(f"{path}: tensor '{name}' has unsupported dtype {dt}")
        if arr.size != math.prod(shape):
            raise UserError(f"{path}: tensor '{name}': {arr.size} elements for shape {shape}")
        tensors[name] = arr.reshape(shape).copy()
    return tensors, meta


def config_from_meta(path, meta):
    """The model config (SPEC §8 JSON) stored in a safetensors file's metadata."""
    if "config" not in meta:
        raise UserError(f"{path}: no 'config' entry in the safetensors metadata")
    try:
        cfg = json.loads(meta["config"])
    except ValueError as e:
        raise UserError(f"{path}: metadata 'config' is not JSON: {e}") from e
    need = ["d_model", "d_tok", "n_layers", "n_heads", "d_ff", "n_bins", "sessions"]
    missing = [k for k in need if k not in cfg]
    if missing:
        raise UserError(f"{path}: config lacks {', '.join(missing)}")
    cfg.setdefault("d_embed_hidden", 2 * cfg["d_tok"])
    cfg.setdefault("ln_eps", 1e-5)
    if cfg["d_model"] % cfg["n_heads"] != 0:
        raise UserError(f"{path}: d_model {cfg['d_model']} is not a multiple of n_heads")
    return cfg


# ----------------------------------------------------------------------------------------------
# The model. Module attribute names are chosen so that state_dict() names are the SPEC §2 names.


class Session(nn.Module):
    """Per-session stitchers and token: sessions.{sid}.stitch_in / stitch_out / token."""

    def __init__(self, n_neurons, d_tok, d_model):
        super().__init__()
        self.stitch_in = nn.Linear(n_neurons, d_tok)
        self.stitch_out = nn.Linear(d_model, n_neurons)
        self.token = nn.Parameter(torch.empty(d_model))


class Embed(nn.Module):
    """e = fc2(softsign(fc1(h)))."""

    def __init__(self, d_tok, d_hidden, d_model):
        super().__init__()
        self.fc1 = nn.Linear(d_tok, d_hidden)
        self.fc2 = nn.Linear(d_hidden, d_model)

    def forward(self, h):
        return self.fc2(F.softsign(self.fc1(h)))


class Attention(nn.Module):
    """Multi-head self-attention; qkv rows are q then k then v, heads contiguous inside each."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, z, causal, p_drop, explicit_mask):
        b, s, d = z.shape
        h = self.n_heads
        q, k, v = self.qkv(z).split(d, dim=-1)  # each [B, S, D]
        q = q.view(b, s, h, d // h).transpose(1, 2)  # [B, H, S, hd]
        k = k.view(b, s, h, d // h).transpose(1, 2)
        v = v.view(b, s, h, d // h).transpose(1, 2)
        # Scale 1/sqrt(hd) is SDPA's default. With as many queries as keys, is_causal=True is the
        # rule "position i attends to j <= i over the whole sequence", prefix tokens included;
        # the explicit lower-triangular mask is the same rule spelled out (slower kernels).
        if causal and explicit_mask:
            keep = torch.ones(s, s, dtype=torch.bool, device=z.device).tril()
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, dropout_p=p_drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop, is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, s, d))


class Mlp(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.fc1 = nn.Linear(d_model, d_ff)
        self.fc2 = nn.Linear(d_ff, d_model)

    def forward(self, z):
        return self.fc2(F.gelu(self.fc1(z)))  # exact (erf) GELU


class Block(nn.Module):
    """Pre-LN transformer block."""

    def __init__(self, d_model, n_heads, d_ff, eps):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model, eps=eps)
        self.attn = Attention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model, eps=eps)
        self.mlp = Mlp(d_model, d_ff)

    def forward(self, z, causal, p_drop, explicit_mask):
        p_attn = p_drop if self.training else 0.0
        a = self.attn(self.ln1(z), causal, p_attn, explicit_mask)
        z = z + F.dropout(a, p_drop, self.training)
        z = z + F.dropout(self.mlp(self.ln2(z)), p_drop, self.training)
        return z


class NDT(nn.Module):
    def __init__(self, cfg, dropout=0.0, explicit_mask=False):
        super().__init__()
        d, dt = cfg["d_model"], cfg["d_tok"]
        self.cfg = cfg
        self.dropout = dropout
        self.explicit_mask = explicit_mask
        for sid in cfg["sessions"]:
            if not sid or "." in sid:
                raise UserError(f"session id '{sid}' cannot be a parameter name component")
        self.sessions = nn.ModuleDict(
            {sid: Session(n, dt, d) for sid, n in sorted(cfg["sessions"].items())}
        )
        self.embed = Embed(dt, cfg["d_embed_hidden"], d)
        self.pos = nn.Parameter(torch.empty(cfg["n_bins"], d))
        self.mask_tokens = nn.Parameter(torch.empty(len(SCHEMES), d))
        self.blocks = nn.ModuleList(
            Block(d, cfg["n_heads"], cfg["d_ff"], cfg["ln_eps"]) for _ in range(cfg["n_layers"])
        )
        self.ln_f = nn.LayerNorm(d, eps=cfg["ln_eps"])

    def init_weights(self, seed):
        """PyTorch defaults (Linear U(+-1/sqrt(fan_in)), tokens/positions N(0,1)) + T-Fixup."""
        g = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                with torch.no_grad():
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 2 * bound - bound)
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 2 * bound - bound)
        with torch.no_grad():
            for s in self.sessions.values():
                s.token.copy_(torch.randn(s.token.shape, generator=g))
            self.pos.copy_(torch.randn(self.pos.shape, generator=g))
            self.mask_tokens.copy_(torch.randn(self.mask_tokens.shape, generator=g))
            scale = 0.67 * self.cfg["n_layers"] ** -0.25
            d = self.cfg["d_model"]
            for b in self.blocks:
                b.attn.out.weight.mul_(scale)
                b.mlp.fc1.weight.mul_(scale)
                b.mlp.fc2.weight.mul_(scale)
                b.attn.qkv.weight[2 * d :].mul_(scale * math.sqrt(2.0))

    def forward(self, x, mask, target, sid, scheme, with_rates=False):
        """x, mask, target [B, T, N] (mask 1 = input zeroed, target 1 = in the loss).

        Returns (loss, log_rates or None)."""
        sess = self.sessions[sid]
        causal = SCHEMES[scheme] == "forward"
        b, t, _ = x.shape
        h = sess.stitch_in(x * (1.0 - mask))  # [B, T, Dtok]
        e = self.embed(h) + self.pos[:t]  # [B, T, D]
        d = e.shape[-1]
        prefix = torch.stack([sess.token, self.mask_tokens[scheme]]).to(e.dtype)  # [2, D]
        z = torch.cat([prefix.unsqueeze(0).expand(b, 2, d), e], dim=1)  # [B, T+2, D]
        z = F.dropout(z, self.dropout, self.training)
        for blk in self.blocks:
            z = blk(z, causal, self.dropout, self.explicit_mask)
        y = self.ln_f(z)[:, 2:]
        r = sess.stitch_out(y).float()  # [B, T, N] log-rates
        nll = (torch.exp(r) - x * r) * target
        loss = nll.sum() / target.sum()
        return loss, (r if with_rates else None)


def build_model(cfg, dropout, explicit_mask, seed, device):
    torch.manual_seed(seed)
    model = NDT(cfg, dropout=dropout, explicit_mask=explicit_mask)
    model.init_weights(seed)
    return model.to(device)


def load_params(model, path, tensors):
    """Copies every model parameter from `tensors` (SPEC §2 names); extra tensors are ignored."""
    own = dict(model.named_parameters())
    missing = [n for n in own if n not in tensors]
    if missing:
        raise UserError(f"{path}: missing parameter(s) {', '.join(missing[:5])}")
    with torch.no_grad():
        for name, p in own.items():
            src = tensors[name]
            if tuple(src.shape) != tuple(p.shape):
                raise UserError(
                    f"{path}: parameter '{name}' has shape {list(src.shape)}, "
                    f"the config gives {list(p.shape)}"
                )
            p.copy_(torch.from_numpy(np.asarray(src, dtype=np.float32)))


def batch_from_tensors(path, tensors, meta, cfg):
    """(x, mask, target, sid, scheme index) from a fixture or batch file."""
    for k in ("x", "mask", "target"):
        if k not in tensors:
            raise UserError(f"{path}: no tensor '{k}'")
    x, m, t = (np.asarray(tensors[k], dtype=np.float32) for k in ("x", "mask", "target"))
    if x.ndim != 3 or m.shape != x.shape or t.shape != x.shape:
        raise UserError(f"{path}: x, mask, target must be [B, T, N] of one shape")
    scheme = meta.get("scheme")
    if scheme not in SCHEMES:
        raise UserError(f"{path}: metadata 'scheme' is {scheme!r}, expected one of {SCHEMES}")
    sid = meta.get("session")
    if sid is None:
        if len(cfg["sessions"]) != 1:
            raise UserError(f"{path}: no metadata 'session' and the config has several sessions")
        sid = next(iter(cfg["sessions"]))
    if sid not in cfg["sessions"]:
        raise UserError(f"{path}: session '{sid}' is not in the config")
    if x.shape[2] != cfg["sessions"][sid]:
        raise UserError(
            f"{path}: batch has {x.shape[2]} neurons, session '{sid}' has {cfg['sessions'][sid]}"
        )
    if x.shape[1] > cfg["n_bins"]:
        raise UserError(f"{path}: batch has {x.shape[1]} bins, the model {cfg['n_bins']}")
    if t.sum() == 0:
        raise UserError(f"{path}: the target mask is empty")
    return torch.from_numpy(x), torch.from_numpy(m), torch.from_numpy(t), sid, SCHEMES.index(scheme)
