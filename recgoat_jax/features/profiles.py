"""User features -> `user_feat.npy`: real user text when the dataset has it, else user
preference profiles from TRAIN interactions only.

Sources of a user's row, first that applies (counted in the report, `user_feat.json`):

1. `user_text`: the user's own record from the users file (`users.jsonl`, written by
   `recgoat data` from a users file; or `--users FILE`), rendered by a user template
   (features/user_text.py) and embedded with the same text encoder as the items. Real
   text wins over a profile from history; `user_text="off"` ignores it.
2. `template_profile` / `llm_profile`: the profile from the user's train history (below),
   for users without text (all users when the dataset has no user text).
3. `mean_fallback`: users with neither (no text and no train item, or `kind="none"`) get
   the mean of the other users' rows, L2-normalised.

A history is the user's TRAIN items only (x_label 0; valid and test items never reach a
prompt, a template or an embedding), most recent first, cut to `max_history` items.

Two generators:

1. `llm`: a causal LM (Hugging Face `AutoModelForCausalLM`, any hub name or local path)
   with the paper's two-step prompt. Step 1 lists the attributes the user's items share
   (category, function, style, material, usage scenario, price range); step 2 turns the
   history and those attributes into a profile under four headings, each with evidence:
   Style & Aesthetics, Function & Usability, Context & Emotion, Other (brand loyalty,
   price sensitivity). Batched, greedy decoding; resumable: each finished user is
   appended to `<work_dir>/llm_profiles.jsonl` with a hash of its prompt and model, and a
   restart skips those users.
2. `template`: a deterministic text built from the history's categories, brands and
   titles, labelled "template profile (not LLM-written)". No model, no randomness.

Rows are embedded like item text, in resumable chunks (features/chunks.py), into
`user_feat.npy` [n_users, dim]. `user_profiles.jsonl` keeps, per user, the source of its
row, its history profile ("" when none was made: an LLM profile is generated only for
users without text) and its rendered user text; `user_feat.json` is the report.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recgoat_jax.data.atomic import atomic_open, save_npy_atomic, write_json_atomic
from recgoat_jax.data.inter import read_inter
from recgoat_jax.errors import DataError, UserError
from recgoat_jax.features import hf
from recgoat_jax.features import text as textfeat
from recgoat_jax.features import user_text as ut
from recgoat_jax.features.chunks import encode_rows, resolve_encoder

TEMPLATE_LABEL = "template profile (not LLM-written)"
SOURCES = ("user_text", "template_profile", "llm_profile", "mean_fallback")
REPORT_FILE = "user_feat.json"

STEP1_PROMPT = """You are analysing the purchase history of one online shopper.
Items the user bought:
{items}

Step 1. List the attributes these items have in common, one line each:
- Category:
- Function:
- Style:
- Material:
- Usage scenario:
- Price range:
Answer only with the list."""

STEP2_PROMPT = """You are writing the preference profile of one online shopper.
Items the user bought:
{items}

Attributes these items share (from step 1):
{attributes}

Step 2. Summarise the user's preferences under these four headings. Under each, state the
preference and cite the items above that are the evidence for it.
Style & Aesthetics:
Function & Usability:
Context & Emotion:
Other (brand loyalty, price sensitivity):"""


# --------------------------------------------------------------------------- histories


def train_histories(inter_path: str | os.PathLike, max_history: int | None = None
                    ) -> tuple[int, int, list[list[int]]]:
    """(n_users, n_items, per-user TRAIN item ids, most recent first)."""
    cols = read_inter(inter_path, timestamps=True)
    if len(cols.users) == 0:
        raise DataError(f"{inter_path}: no interactions")
    n_users = int(cols.users.max()) + 1
    n_items = int(cols.items.max()) + 1
    train = np.nonzero(cols.labels == 0)[0]
    ts = cols.timestamps
    if ts is not None:  # most recent first; ties keep the later row first
        train = train[np.lexsort((-train, -ts[train]))]
    else:
        train = train[::-1]
    hist: list[list[int]] = [[] for _ in range(n_users)]
    for r in train.tolist():
        h = hist[int(cols.users[r])]
        if max_history is None or len(h) < max_history:
            h.append(int(cols.items[r]))
    return n_users, n_items, hist


def describe_item(rec: dict) -> str:
    """One line per history item: title (brand; category path; price)."""
    f = textfeat.template_fields(rec)
    title = f["title"] or f["asin"] or "untitled item"
    path = " > ".join((rec.get("categories") or [[]])[0])
    extra = "; ".join(x for x in (f["brand"] and f"brand {f['brand']}", path, f["price"]) if x)
    return f"{title} ({extra})" if extra else title


def _items_block(items: Sequence[dict]) -> str:
    return "\n".join(f"{k}. {describe_item(r)}" for k, r in enumerate(items, 1))


def step1_prompt(items: Sequence[dict]) -> str:
    return STEP1_PROMPT.format(items=_items_block(items))


def step2_prompt(items: Sequence[dict], attributes: str) -> str:
    return STEP2_PROMPT.format(items=_items_block(items), attributes=attributes.strip() or "(none)")


def template_profile(items: Sequence[dict], max_titles: int = 10) -> str:
    """Deterministic profile from categories, brands and titles (most frequent first)."""
    if not items:
        return ""
    cats: collections.Counter = collections.Counter()
    brands: collections.Counter = collections.Counter()
    for r in items:
        for path in (r.get("categories") or [])[:1]:
            if path:
                cats[" > ".join(path)] += 1
        if r.get("brand"):
            brands[r["brand"]] += 1

    def top(c: collections.Counter) -> str:
        return "; ".join(f"{k} ({v})" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    titles = [r.get("title") for r in items if r.get("title")][:max_titles]
    parts = [f"{TEMPLATE_LABEL}.", f"The user interacted with {len(items)} items."]
    if cats:
        parts.append(f"Categories: {top(cats)}.")
    if brands:
        parts.append(f"Brands: {top(brands)}.")
    if titles:
        parts.append("Items: " + "; ".join(titles) + ".")
    return " ".join(parts)


# --------------------------------------------------------------------------- LLM


class HFGenerator(hf.HFModel):
    """prompts -> completions with a Hugging Face causal LM (greedy, left padding).

    Uses the tokenizer's chat template when it has one. `calls` counts generate() calls.
    """

    def __init__(self, model: str, *, device: str | None = None, dtype: str = "auto",
                 max_new_tokens: int = 256, max_prompt_tokens: int = 2048):
        super().__init__(model, device, dtype)
        self.max_new_tokens = max_new_tokens
        self.max_prompt_tokens = max_prompt_tokens
        self.tokenizer, self.model = self._load_pair("AutoTokenizer", "AutoModelForCausalLM")
        tok = self.tokenizer
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        gc = self.model.generation_config
        if gc.pad_token_id is None:
            gc.pad_token_id = tok.pad_token_id
        if gc.eos_token_id is None:
            gc.eos_token_id = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id

    @property
    def fingerprint(self) -> str:
        return f"{self.model_name}:greedy:max_new_tokens={self.max_new_tokens}"

    def _format(self, prompt: str) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template([{"role": "user", "content": prompt}],
                                           add_generation_prompt=True, tokenize=False)
        return prompt + "\n"

    def _forward(self, prompts: Sequence[str]) -> list[str]:
        batch = self.tokenizer([self._format(p) for p in prompts], return_tensors="pt",
                               padding=True, truncation=True, max_length=self.max_prompt_tokens,
                               add_special_tokens=not getattr(self.tokenizer, "chat_template", None))
        batch = batch.to(self.device)
        with self._torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, batch["input_ids"].shape[1]:]
        return [s.strip() for s in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


def _sha(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


def generate_llm_profiles(
    histories: Sequence[Sequence[dict]],
    generate: Callable[[list[str]], list[str]],
    work_file: str | os.PathLike,
    *,
    model_id: str,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[list[str], dict]:
    """Two-step LLM profiles for every user with a history ("" for the others).

    Resumable: finished users are appended (one JSON line each, flushed per batch) to
    work_file; a user is reused when its step-1 prompt and model_id hash match.
    """
    work_file = Path(work_file)
    work_file.parent.mkdir(parents=True, exist_ok=True)
    done: dict[int, dict] = {}
    if work_file.exists():
        with open(work_file, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rec = json.loads(line)
                    done[int(rec["userID"])] = rec
    profiles = [""] * len(histories)
    todo = []
    reused = 0
    for u, items in enumerate(histories):
        if not items:
            continue
        p1 = step1_prompt(items)
        key = _sha(model_id, p1)
        rec = done.get(u)
        if rec and rec.get("key") == key and isinstance(rec.get("profile"), str):
            profiles[u] = rec["profile"]
            reused += 1
        else:
            todo.append((u, items, p1, key))
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="user", desc="LLM profiles")
    calls = 0
    try:
        with open(work_file, "a", encoding="utf-8") as f:
            for s in range(0, len(todo), batch_size):
                batch = todo[s : s + batch_size]
                step1 = list(generate([p1 for _, _, p1, _ in batch]))
                step2 = list(generate([step2_prompt(items, a) for (_, items, _, _), a in zip(batch, step1)]))
                calls += 2
                if len(step1) != len(batch) or len(step2) != len(batch):
                    raise RuntimeError("the generator returned a different number of texts than prompts")
                for (u, _, _, key), a, prof in zip(batch, step1, step2):
                    profiles[u] = prof.strip()
                    f.write(json.dumps({"userID": u, "key": key, "step1": a, "profile": profiles[u]},
                                       ensure_ascii=False) + "\n")
                f.flush()
                os.fsync(f.fileno())
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return profiles, {"llm_users_generated": len(todo), "llm_users_reused": reused,
                      "llm_generate_calls": calls}


# --------------------------------------------------------------------------- build


def build_user_features(
    dataset_dir: str | os.PathLike,
    *,
    kind: str = "template",
    model: str | None = None,
    llm_model: str | None = None,
    generate: Callable[[list[str]], list[str]] | None = None,
    llm_batch_size: int = 8,
    max_new_tokens: int = 256,
    max_history: int = 20,
    meta_path=None,
    user_text: str = "auto",
    user_template: str = ut.DEFAULT_USER_TEMPLATE,
    users_path=None,
    batch_size: int = 64,
    chunk_size: int = 1024,
    work_dir: str | os.PathLike | None = None,
    device: str | None = None,
    dtype: str = "auto",
    encoder: Callable[[list], np.ndarray] | None = None,
    model_id: str | None = None,
    progress: bool = True,
) -> dict:
    """Writes `user_profiles.jsonl`, `user_feat.npy` [n_users, dim] and `user_feat.json`
    (the report, also returned). kind: the history profiles, "template", "llm" or "none" (no profiles: users without
    text get the mean row). user_text: "auto" (real user text from users_path or
    `<dir>/users.jsonl` when there is some; it wins over a profile) or "off". For "llm",
    give llm_model (a path or hub name) or a `generate` function (prompts -> texts).
    `encoder` replaces the text encoder."""
    if kind not in ("template", "llm", "none"):
        raise UserError(f"--profiles {kind!r}: expected template, llm or none")
    if user_text not in ("auto", "off"):
        raise UserError(f"--user-text {user_text!r}: expected auto or off")
    d = Path(dataset_dir)
    inter = textfeat.find_inter(d)
    n_users, n_items, hist = train_histories(inter, max_history)
    records = ut.user_records(d, n_users, users_path) if user_text == "auto" else None
    if records is None and kind == "none":
        raise UserError(f"{d}: no user text (users.jsonl, or --users FILE) and --profiles "
                        "none: nothing to build user features from")
    texts = ut.user_texts(records, user_template) if records is not None else [""] * n_users
    has_text = [bool(t) for t in texts]
    work = Path(work_dir) if work_dir else d / ".work" / "profiles"
    report: dict = {"n_users": n_users, "kind": kind, "max_history": max_history,
                    "source": "train interactions only (x_label 0)"}
    profiles = [""] * n_users
    gen_id = None
    if kind != "none":
        recs = textfeat.item_records(d, meta_path)
        if len(recs) < n_items:
            raise DataError(f"{d / 'i_id_mapping.csv'}: maps {len(recs)} items but {inter} "
                            f"uses itemID up to {n_items - 1}")
        histories = [[recs[i] for i in h] for h in hist]
    if kind == "template":
        profiles = [template_profile(h) for h in histories]
        gen_id = TEMPLATE_LABEL
    elif kind == "llm":
        if generate is None and not all(has_text):
            if not llm_model:
                raise UserError("--profiles llm needs --llm-model PATH_OR_NAME (a causal LM)")
            generate = HFGenerator(llm_model, device=device, dtype=dtype,
                                   max_new_tokens=max_new_tokens)
        gen_id = getattr(generate, "fingerprint", None) or llm_model or repr(generate)
        # real text wins: no LLM calls for users who have it
        todo = [[] if t else h for h, t in zip(histories, has_text)]
        profiles, stats = generate_llm_profiles(todo, generate, work / "llm_profiles.jsonl",
                                                model_id=gen_id, batch_size=llm_batch_size,
                                                progress=progress)
        report.update(stats)
    rows = [t if t else p for t, p in zip(texts, profiles)]
    sources = ["user_text" if t else (f"{kind}_profile" if p else "mean_fallback")
               for t, p in zip(texts, profiles)]
    encoder, model_id = resolve_encoder(encoder, model_id,
                                        lambda: textfeat.load_encoder(model, device, dtype))
    feat, present, stats = encode_rows(rows, encoder, work / "embed", model_id=model_id,
                                       chunk_size=chunk_size, batch_size=batch_size,
                                       progress=progress, desc="user text / profiles")
    with atomic_open(d / "user_profiles.jsonl", "w") as f:
        for u, (p, t, src) in enumerate(zip(profiles, texts, sources)):
            f.write(json.dumps({"userID": u, "source": src, "kind": kind, "generator": gen_id,
                                "profile": p, "user_text": t}, ensure_ascii=False) + "\n")
    save_npy_atomic(d / "user_feat.npy", feat)
    counts = {s: sources.count(s) for s in SOURCES}
    report.update({
        "dim": int(feat.shape[1]),
        "user_text": ("off" if user_text == "off" else
                      "none found" if records is None else
                      str(users_path) if users_path else str(d / ut.USERS_FILE)),
        "user_template": user_template if records is not None else None,
        "sources": counts,
        "users_without_text": n_users - sum(has_text),
        "users_without_profile": int((~present).sum()),
        "fallback": ("users without text: their " + (f"{kind} profile from train history, "
                     "else " if kind != "none" else "") + "the mean of the other users' rows, "
                     "L2-normalised"),
        "encoder": model_id, "out": str(d / "user_feat.npy"),
        **{f"embed_{k}": v for k, v in stats.items()}})
    report["summary"] = summary(report)
    write_json_atomic(d / REPORT_FILE, report)
    return report


def summary(report: dict) -> str:
    """One line: where the rows came from, e.g. "from user text 3966, mean fallback 0"."""
    c = report["sources"]
    if report["user_text"] in ("off", "none found"):
        return (f"from {report['kind']} profiles (train interactions only), "
                f"{report['users_without_profile']} users without a profile")
    parts = [f"user text {c['user_text']}"]
    if report["kind"] != "none":
        parts.append(f"{report['kind']} profiles (train interactions only) "
                     f"{c[report['kind'] + '_profile']}")
    parts.append(f"mean fallback {c['mean_fallback']}")
    return "from " + ", ".join(parts)
