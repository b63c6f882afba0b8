"""Small random QANNs in SpikeZIP-TF's own layout, built as SpikingJelly 2.0's SpikeZIP
example (``ann2snn/examples/roberta_spikezip_qann_synthetic.py``) and its ViT recipe
expect: quantisers carrying ``s``, ``sym``, ``pos_max``, ``neg_min`` and ``level``, a
RoBERTa self-attention with ``query_quan/key_quan/value_quan/attn_quan/after_attn_quan``
and a timm-style ViT whose attention carries ``quan_q/quan_k/quan_v/attn_quan/
after_attn_quan/quan_proj`` (imported by ``test_conversion_spikezip.py``, not collected)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Quan(nn.Module):
    """A SpikeZIP-TF quantiser: s, sym, pos_max, neg_min, level."""

    def __init__(self, level: int = 8, sym: bool = True, scale: float = 0.25) -> None:
        super().__init__()
        self.level, self.sym = level, sym
        self.s = nn.Parameter(torch.tensor(float(scale)))
        pos, neg = (level // 2 - 1, -(level // 2)) if sym else (level - 1, 0)
        self.register_buffer("pos_max", torch.tensor(float(pos)))
        self.register_buffer("neg_min", torch.tensor(float(neg)))

    def forward(self, x):
        q = torch.clamp(torch.floor(x / self.s + 0.5), float(self.neg_min), float(self.pos_max))
        return q * self.s


class RobertaAttention(nn.Module):
    """The self-attention of SpikingJelly's synthetic SpikeZIP RoBERTa example."""

    def __init__(self, hidden=16, heads=4, level=8):
        super().__init__()
        self.num_attention_heads, self.attention_head_size = heads, hidden // heads
        self.all_head_size = hidden
        self.query, self.key, self.value = (nn.Linear(hidden, hidden) for _ in range(3))
        self.query_quan, self.key_quan, self.value_quan = (Quan(level) for _ in range(3))
        self.attn_quan = Quan(level, sym=False, scale=0.125)
        self.after_attn_quan = Quan(level)
        self.dropout = nn.Dropout(0.0)
        self.position_embedding_type, self.is_decoder = "absolute", False

    def split(self, x):
        # HF's way (a size tuple concatenated), which torch.fx traces; unpacking would not
        shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)  # noqa: RUF005
        return x.view(shape).permute(0, 2, 1, 3)

    def forward(
        self,
        hidden_states,
        attention_mask=None,
        head_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_value=None,
        output_attentions=False,
    ):
        q = self.split(self.query_quan(self.query(hidden_states)))
        k = self.split(self.key_quan(self.key(hidden_states)))
        v = self.split(self.value_quan(self.value(hidden_states)))
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.attention_head_size**0.5)
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = self.attn_quan(self.dropout(F.softmax(scores, dim=-1)))
        context = self.after_attn_quan(torch.matmul(probs, v))
        context = context.permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (self.all_head_size,))  # noqa: RUF005
        return (context, probs) if output_attentions else (context,)


class Roberta(nn.Module):
    """Token embedding, one attention (mask by keyword), LayerNorm, a classifier on token 0."""

    def __init__(self, vocab=32, hidden=16, heads=4, level=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.attention = RobertaAttention(hidden, heads, level)
        self.norm = nn.LayerNorm(hidden)
        self.classifier = nn.Linear(hidden, 2)

    def forward(self, tokens, attention_mask=None):
        hidden = self.embedding(tokens)
        hidden = self.attention(hidden, attention_mask=attention_mask)[0]
        return self.classifier(self.norm(hidden)[:, 0])


class ViTAttention(nn.Module):
    """SpikeZIP-TF's quantised ViT attention (what SpikingJelly's ViT attention sums to)."""

    def __init__(self, dim=16, heads=4, level=8):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.quan_q, self.quan_k, self.quan_v = Quan(level), Quan(level), Quan(level)
        self.attn_quan = Quan(level, sym=False, scale=0.125)
        self.after_attn_quan, self.quan_proj = Quan(level), Quan(level)
        self.attn_drop, self.proj_drop = nn.Dropout(0.0), nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = (
            self.qkv(x)
            .reshape(B, N, 3, self.num_heads, self.head_dim)
            .permute(2, 0, 3, 1, 4)
            .unbind(0)
        )
        q, k, v = self.quan_q(q), self.quan_k(k), self.quan_v(v)
        attn = self.attn_drop(self.attn_quan(((q * self.scale) @ k.transpose(-2, -1)).softmax(-1)))
        x = self.after_attn_quan(attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.quan_proj(self.proj_drop(self.proj(x)))


class Mlp(nn.Module):
    """fc1, ReLU, an unsigned quantiser (``signed_after_relu``: a signed one), fc2."""

    def __init__(self, dim: int, hidden: int, level: int, signed_after_relu: bool = False):
        super().__init__()
        self.fc1, self.act = nn.Linear(dim, hidden), nn.ReLU()
        self.quan1 = Quan(level, sym=signed_after_relu)
        self.fc2, self.quan2 = nn.Linear(hidden, dim), Quan(level)

    def forward(self, x):
        return self.quan2(self.fc2(self.quan1(self.act(self.fc1(x)))))


class ZipMlp(nn.Module):
    """SpikeZIP-TF's own ViT MLP layout: ``act = Sequential(MyQuan(sym=False), ReLU)``,
    the unsigned quantiser before the ReLU."""

    def __init__(self, dim: int, hidden: int, level: int):
        super().__init__()
        self.fc1, self.act = (
            nn.Linear(dim, hidden),
            nn.Sequential(Quan(level, sym=False), nn.ReLU()),
        )
        self.fc2, self.quan2 = nn.Linear(hidden, dim), Quan(level)

    def forward(self, x):
        return self.quan2(self.fc2(self.act(self.fc1(x))))


class FullQuan(nn.Module):
    """SpikeZIP-TF's ``MyQuan`` built with a level of 512 or more: ``pos_max = "full"``,
    no ``neg_min``, and its forward returns its input."""

    def __init__(self) -> None:
        super().__init__()
        self.level, self.sym, self.pos_max = 512, True, "full"
        self.s = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return x


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, level: int, signed_after_relu: bool = False):
        super().__init__()
        self.norm1, self.norm1_quan = nn.LayerNorm(dim), Quan(level)
        self.attn = ViTAttention(dim, heads, level)
        self.norm2, self.norm2_quan = nn.LayerNorm(dim), Quan(level)
        self.mlp = Mlp(dim, 2 * dim, level, signed_after_relu)

    def forward(self, x):
        x = x + self.attn(self.norm1_quan(self.norm1(x)))
        return x + self.mlp(self.norm2_quan(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, chans, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(chans, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """The forward SpikingJelly's recipe gives a ViT: patches, class token, position
    embedding, blocks, norm, head on the class token."""

    def __init__(self, depth: int = 2, level: int = 8, signed_after_relu: bool = False):
        image, patch, chans, dim, heads, classes = 8, 4, 3, 16, 4, 5
        super().__init__()
        self.patch_embed = PatchEmbed(chans, dim, patch)
        tokens = (image // patch) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.5)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.5)
        self.pos_drop = nn.Dropout(0.0)
        blocks = (Block(dim, heads, level, signed_after_relu) for _ in range(depth))
        self.blocks = nn.Sequential(*blocks)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_drop(x + self.pos_embed)
        return self.head(self.norm(self.blocks(x))[:, 0])


class HFSelfAttention(RobertaAttention):
    """SpikeZIP-TF's quantised RoBERTa self-attention with Hugging Face 5's calling
    convention (keyword arguments; ``(output, weights)`` returned)."""

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        return super().forward(hidden_states, attention_mask=attention_mask)[0], None


def hugging_face_qann(cls_name: str, layers: int = 2, relu_quan: bool = False, **config):
    """A float64 Hugging Face ``cls_name`` (hidden 16, 4 heads, vocabulary 40) with each
    layer's ``attention.self`` replaced by :class:`HFSelfAttention` (the layer's own
    query/key/value kept), weights of a trained size (std 0.4; its init is 0.02);
    ``relu_quan``: ReLU then an unsigned quantiser as the MLP's activation."""
    import transformers

    kind = transformers.BertConfig if cls_name.startswith("Bert") else transformers.RobertaConfig
    settings = dict(
        vocab_size=40, hidden_size=16, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=32, max_position_embeddings=16, attn_implementation="eager",
    )  # fmt: skip
    settings.update(config)
    model = getattr(transformers, cls_name)(kind(**settings)).to(torch.float64).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.4)
    base = getattr(model, model.base_model_prefix, model)
    for layer in base.encoder.layer:
        own = layer.attention.self
        attention = HFSelfAttention(16, 4, 8).to(torch.float64)
        attention.query, attention.key, attention.value = own.query, own.key, own.value
        layer.attention.self = attention
        if relu_quan:
            act = nn.Sequential(nn.ReLU(), Quan(8, sym=False))
            layer.intermediate.intermediate_act_fn = act.to(torch.float64)
    return model
