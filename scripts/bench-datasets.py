#!/usr/bin/env python3
"""Turns the public intent datasets into knowledge bases and query files for `helpdesk kb eval`.

    scripts/bench-datasets.py DATASETS_DIR OUT_DIR [--bm25]

DATASETS_DIR holds banking77/ and clinc150/ (see the team's datasets README). Writes to OUT_DIR:

  banking77-kb.json       one article per intent; its questions are 80% of that intent's
                          training queries
  banking77-val.csv       the other 20% (held out, never in the knowledge base)
  banking77-full-kb.json  all 10,003 training queries: the 10,000-question base for latency,
                          build time and memory (its accuracy is meaningless: it has seen them)
  clinc150-kb.json        one article per intent from `train`
  clinc150-val.csv        `val` (expected: the intent) and `oos_val` (expected: empty, a hand-off)
  clinc150-val-in.csv     `val` alone: its auto-reply rate is the share of in-scope queries answered
  clinc150-val-oos.csv    `oos_val` alone: its hand-off recall is the out-of-scope one
  clinc150-10k-kb.json    the first 10,000 `train` queries (66-67 per intent): a 10,000-question
                          base that `clinc150-val.csv` was never part of, for latency, build
                          time and memory

The datasets' test splits are kept apart from tuning and are not in the team's folder. Where
they are present, the script writes their query files too, against knowledge bases built from
the whole training split as the issue asks:

  banking77-test.csv      from banking77/test.csv (text,category, as the original release);
                          its knowledge base is banking77-full-kb.json
  clinc150-test.csv       `test` and `oos_test`, read from the first of clinc150/test.json,
  clinc150-test-in.csv    clinc150/data_full.json (the original release's file) or
  clinc150-test-oos.csv   clinc150/train_val.json that has those keys; the knowledge base is
                          clinc150-kb.json

With the massive/ folder (MASSIVE 1.1, en-US and zh-CN, parallel by id) it writes the few-shot
sets of issue 13, SHOTS (8) training queries per intent, chosen with the same seed in both
languages (the same ids, so the Chinese and the English articles say the same things):

  massive-en-kb.json      one article per intent, 8 English questions
  massive-zh-kb.json      the same, in Chinese
  massive-en-val.csv      the validation split, English
  massive-zh-val.csv      the validation split, Chinese
  massive-en-held-kb.json the English articles without 10 intents (chosen with the seed)
  massive-zh-held-kb.json the same, in Chinese; against massive-*-val.csv, the queries of
                          the 10 left-out intents expect a hand-off:
  massive-en-held-val.csv
  massive-zh-held-val.csv
  (Chinese questions against English articles: massive-en-kb.json with massive-zh-val.csv)

  and, where massive/ also holds en-US.test.csv and zh-CN.test.csv (the same columns), the
  test split's query files against the same articles:

  massive-en-test.csv, massive-zh-test.csv, massive-en-held-test.csv, massive-zh-held-test.csv

and BANKING77 with 10 questions per intent:

  banking77-10shot-kb.json  10 of each intent's knowledge-base questions (banking77-kb.json)
                            against banking77-val.csv

Every query file leaves out the queries that repeat a training text word for word, as the
datasets README asks (about 7% of MASSIVE's Chinese validation texts do, and they are easier
than the rest): a query must be answered from what the articles say, not found in them. For
BANKING77's validation split, whose queries come from the training file, that is a text of
the knowledge base. The script prints how many it left out.

With --bm25 it also prints the lexical baselines: plain BM25 over the questions, one document
per question and one per intent, accuracy@1 on the same held-out queries.

Standard library only; the split is seeded, so every run writes the same files.
"""

import argparse
import collections
import csv
import json
import math
import random
import re
import sys
from pathlib import Path

VALIDATION_SHARE = 0.2
SEED = 77
SHOTS = 8
BANKING_SHOTS = 10
LEFT_OUT = 10


def slug(intent):
    """An article id the desk accepts (A-Z a-z 0-9 _ -): BANKING77 has `reverted_card_payment?`."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", intent) if intent else intent


def article(intent, questions):
    return {
        "id": slug(intent),
        "title": intent.replace("_", " "),
        "questions": questions,
        "answer": f"(the answer about {intent.replace('_', ' ')})",
        "locale": "en",
    }


def write_kb(path, by_intent):
    articles = [article(i, qs) for i, qs in sorted(by_intent.items())]
    path.write_text(json.dumps(articles, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    return articles


def write_queries(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["text", "expected"])
        w.writerows((text, slug(expected)) for text, expected in rows)


def unseen(name, rows, seen):
    """The rows whose text is not one of `seen` (the training texts) word for word."""
    kept = [r for r in rows if r[0].strip() not in seen]
    if len(kept) < len(rows):
        print(f"{name}: {len(rows) - len(kept)} of {len(rows)} queries left out: they repeat a training text")
    return kept


def banking77(src, out):
    by_intent = collections.defaultdict(list)
    with (src / "train.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_intent[row["category"]].append(row["text"].strip())
    rng = random.Random(SEED)
    kb, val = {}, []
    for intent in sorted(by_intent):
        qs = list(by_intent[intent])
        rng.shuffle(qs)
        cut = round(len(qs) * VALIDATION_SHARE)
        val += [(q, intent) for q in qs[:cut]]
        kb[intent] = qs[cut:]
    val = unseen("banking77-val", val, {q for qs in kb.values() for q in qs})
    write_kb(out / "banking77-kb.json", kb)
    write_queries(out / "banking77-val.csv", val)
    write_kb(out / "banking77-full-kb.json", by_intent)
    test = src / "test.csv"
    if test.is_file():
        with test.open(newline="", encoding="utf-8") as f:
            rows = [(row["text"].strip(), row["category"]) for row in csv.DictReader(f)]
        unknown = sorted({i for _, i in rows} - set(by_intent))
        if unknown:
            sys.exit(f"{test}: intents not in train.csv: {', '.join(unknown)}")
        rows = unseen("banking77-test", rows, {q for qs in by_intent.values() for q in qs})
        write_queries(out / "banking77-test.csv", rows)
        print(f"banking77 test split: {len(rows)} queries -> banking77-test.csv (kb: banking77-full-kb.json)")
    return kb, val


def clinc150_test(src):
    """The `test` and `oos_test` lists, from whichever file of the folder holds them."""
    for name in ("test.json", "data_full.json", "train_val.json"):
        path = src / name
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        if "test" in data and "oos_test" in data:
            return path, data["test"], data["oos_test"]
    return None, None, None


def clinc150(src, out):
    data = json.loads((src / "train_val.json").read_text(encoding="utf-8"))
    kb = collections.defaultdict(list)
    for text, intent in data["train"]:
        kb[intent].append(text.strip())
    seen = {q for qs in kb.values() for q in qs}
    rows = [(t.strip(), i) for t, i in data["val"]] + [(t.strip(), "") for t, _ in data["oos_val"]]
    rows = unseen("clinc150-val", rows, seen)
    write_kb(out / "clinc150-kb.json", kb)
    small = {}
    for n, intent in enumerate(sorted(kb)):
        small[intent] = kb[intent][: 67 if n < 100 else 66]
    write_kb(out / "clinc150-10k-kb.json", small)
    write_queries(out / "clinc150-val.csv", rows)
    write_queries(out / "clinc150-val-in.csv", [r for r in rows if r[1]])
    write_queries(out / "clinc150-val-oos.csv", [r for r in rows if not r[1]])
    path, test, oos_test = clinc150_test(src)
    if path is not None:
        unknown = sorted({i for _, i in test} - set(kb))
        if unknown:
            sys.exit(f"{path}: intents not in train: {', '.join(unknown)}")
        test_rows = [(t.strip(), i) for t, i in test] + [(t.strip(), "") for t, _ in oos_test]
        test_rows = unseen("clinc150-test", test_rows, seen)
        write_queries(out / "clinc150-test.csv", test_rows)
        write_queries(out / "clinc150-test-in.csv", [r for r in test_rows if r[1]])
        write_queries(out / "clinc150-test-oos.csv", [r for r in test_rows if not r[1]])
        print(f"clinc150 test split ({path.name}): {len(test)} in scope + {len(oos_test)} out of scope "
              f"-> clinc150-test*.csv (kb: clinc150-kb.json)")
    return kb, rows


def read_massive(path):
    with path.open(newline="", encoding="utf-8") as f:
        return {row["id"]: (row["text"].strip(), row["intent"]) for row in csv.DictReader(f)}


def massive(src, out):
    langs = ("en-US", "zh-CN")
    train = {lang: read_massive(src / f"{lang}.train.csv") for lang in langs}
    splits = [("val", "validation")]
    if all((src / f"{lang}.test.csv").is_file() for lang in langs):
        splits.append(("test", "test"))
    ids_by_intent = collections.defaultdict(list)
    for i, (_, intent) in sorted(train["en-US"].items(), key=lambda kv: int(kv[0])):
        if i in train["zh-CN"]:
            ids_by_intent[intent].append(i)
    rng = random.Random(SEED)
    chosen = {}
    for intent in sorted(ids_by_intent):
        ids = list(ids_by_intent[intent])
        rng.shuffle(ids)
        chosen[intent] = ids[:SHOTS]
    intents = sorted(chosen)
    left_out = set(random.Random(SEED).sample(intents, LEFT_OUT))
    for lang, short in (("en-US", "en"), ("zh-CN", "zh")):
        kb = {intent: [train[lang][i][0] for i in ids] for intent, ids in chosen.items()}
        write_kb(out / f"massive-{short}-kb.json", kb)
        write_kb(out / f"massive-{short}-held-kb.json", {i: q for i, q in kb.items() if i not in left_out})
        seen = {t for t, _ in train[lang].values()}
        for split, name in splits:
            queries = read_massive(src / f"{lang}.{name}.csv")
            unknown = sorted({i for _, i in queries.values()} - set(kb))
            if unknown:
                sys.exit(f"{src / f'{lang}.{name}.csv'}: intents not in train: {', '.join(unknown)}")
            rows = unseen(f"massive-{short}-{split}", list(queries.values()), seen)
            write_queries(out / f"massive-{short}-{split}.csv", rows)
            write_queries(out / f"massive-{short}-held-{split}.csv",
                          [(t, "" if i in left_out else i) for t, i in rows])
    print(f"massive: {len(intents)} intents, {SHOTS} questions each; {LEFT_OUT} left out: "
          f"{', '.join(sorted(left_out))}")


def banking77_few_shot(kb, out):
    write_kb(out / "banking77-10shot-kb.json", {i: qs[:BANKING_SHOTS] for i, qs in kb.items()})


def words(text):
    return re.findall(r"[a-z0-9']+", text.lower())


class BM25:
    """Okapi BM25 (k1 1.2, b 0.75) over an inverted index: the plain lexical baseline."""

    def __init__(self, docs, k1=1.2, b=0.75):
        self.labels = [label for label, _ in docs]
        self.postings = collections.defaultdict(list)
        lengths = []
        for n, (_, text) in enumerate(docs):
            tf = collections.Counter(words(text))
            lengths.append(sum(tf.values()))
            for term, count in tf.items():
                self.postings[term].append((n, count))
        avg = sum(lengths) / max(len(lengths), 1)
        self.norm = [k1 * (1 - b + b * length / avg) for length in lengths]
        self.k1 = k1
        self.idf = {
            t: math.log(1 + (len(docs) - len(p) + 0.5) / (len(p) + 0.5))
            for t, p in self.postings.items()
        }

    def top(self, query):
        scores = collections.defaultdict(float)
        for term in set(words(query)):
            for n, tf in self.postings.get(term, ()):
                scores[n] += self.idf[term] * tf * (self.k1 + 1) / (tf + self.norm[n])
        if not scores:
            return None
        return self.labels[max(scores, key=scores.get)]


def bm25_baselines(name, kb, rows):
    per_question = BM25([(i, q) for i, qs in kb.items() for q in qs])
    per_intent = BM25([(i, " ".join(qs)) for i, qs in kb.items()])
    answerable = [(t, e) for t, e in rows if e]
    for label, model in (("one doc per question", per_question), ("one doc per intent", per_intent)):
        right = sum(model.top(t) == e for t, e in answerable)
        print(f"{name}: BM25 {label}: accuracy@1 {right / len(answerable):.4f} ({len(answerable)} queries)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("datasets", type=Path, help="folder with banking77/ and clinc150/")
    p.add_argument("out", type=Path, help="where to write the knowledge bases and query files")
    p.add_argument("--bm25", action="store_true", help="also print the BM25 baselines")
    args = p.parse_args()
    for sub in ("banking77/train.csv", "clinc150/train_val.json"):
        if not (args.datasets / sub).is_file():
            sys.exit(f"{args.datasets / sub} not found: DATASETS_DIR must hold banking77/ and clinc150/")
    args.out.mkdir(parents=True, exist_ok=True)
    b_kb, b_val = banking77(args.datasets / "banking77", args.out)
    banking77_few_shot(b_kb, args.out)
    c_kb, c_rows = clinc150(args.datasets / "clinc150", args.out)
    if (args.datasets / "massive" / "en-US.train.csv").is_file():
        massive(args.datasets / "massive", args.out)
    print(f"wrote {args.out}: banking77 {len(b_kb)} articles / {len(b_val)} held-out queries, "
          f"clinc150 {len(c_kb)} articles / {len(c_rows)} queries")
    if args.bm25:
        bm25_baselines("banking77", b_kb, b_val)
        bm25_baselines("clinc150", c_kb, c_rows)


if __name__ == "__main__":
    main()
