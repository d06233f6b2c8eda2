#!/usr/bin/env python3
"""Writes the project's golden tokenizer fixtures: four small tokenizer.json files trained with the Hugging Face
`tokenizers` library and set up exactly as the real checkpoints set theirs up, each with cases.json holding what
`tokenizers` itself returns for a varied set of texts (unicode, runs of whitespace, digits, emoji, special tokens):

    qwen2       byte-level BPE: NFC, Qwen2's Split regex, ByteLevel without regex, <|im_start|>-style specials
    gpt2        byte-level BPE: ByteLevel with the built-in GPT-2 regex, no normalizer
    llama       SentencePiece-style BPE with byte fallback: Prepend/Replace normalizer, Mixtral/Llama-2 decoder
                (Replace, ByteFallback, Fuse, Strip), <s> added by TemplateProcessing
    metaspace   SentencePiece-style BPE with byte fallback: Metaspace pre-tokenizer (prepend_scheme first) and
                Metaspace decoder, as newer Llama/Mistral conversions write it
    converted   gpt2 as transformers' converters write it: "continuing_subword_prefix": "" and
                "end_of_word_suffix": "" in the model (GPT-2, Qwen2, Llama 3 files on the Hub have these)

Run it in a throwaway virtual environment outside the repository; the tests read the committed output and never
need Python:

    python3 -m venv /tmp/moe-ref && /tmp/moe-ref/bin/pip install tokenizers
    /tmp/moe-ref/bin/python scripts/make_tokenizer_fixtures.py Tests/Fixtures/tokenizers
"""
import inspect
import json
import os
import random
import sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")

TEXTS = [
    "",
    " ",
    "Hello world",
    "Hello, world! How are you today?",
    "  leading and trailing spaces  ",
    "many     spaces\tand\ttabs\t\there",
    "line one\nline two\r\nline three\n\n\nafter blank lines\n",
    "I'm sure they'll say it's fine, we've seen he'd won. DON'T SHOUT, I'LL LISTEN.",
    "Numbers: 0 7 42 1234567890 3.14159 -273.15 1,000,000 2026-11-23 0x1F",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe",
    "cafe\u0301 decomposed accents: e\u0301 a\u0300 o\u0308",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\u30ab\u30bf\u30ab\u30ca",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    "Emoji: \U0001f44d \U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467 \U0001f389\U0001f389 \U0001f1eb\U0001f1f7",
    "\u2764\ufe0f\U0001f525\U0001f680 rockets",
    "odd spaces:\u00a0nbsp\u3000ideographic\u2003em\u000bvtab\u0085nel\u2028ls",
    "code: def f(x): return x**2  # square\n    if x >= 10 && y != 3 { z[i] = \"q\"; }",
    "URL https://example.com/path?q=1&r=two#frag and email a.b@c.org",
    "repeated aaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbbb !!!!!!!!! ......",
    "math \u2211 \u222b \u221a2 \u2248 1.414 \u03c0r\u00b2 \u00bd \u2153 \u00b2\u00b3",
    "zero\u200bwidth\u200cjoiners\u200dhere and a soft\u00adhyphen",
    "MiXeD CaSe WoRdS and ALLCAPS",
    "\u00bfQu\u00e9 tal? \u00a1Muy bien! \u00c0 bient\u00f4t. \u00c7a va?",
    "tab\tat\tends\t",
    "\n",
    "   ",
    "a",
    "\U0001f600",
    "a\u0300\u0301\u0302 stacked marks",
    "special <|im_start|>user\nhi<|im_end|> and <|endoftext|>",
    "<s>bos in text</s> and <unk> unknown",
    "rare symbols \u16a0\u16a2\u16a6 \U00010348 \U0001d11e \u2603 \u0f00",
]

# Enough text in each script that training learns merges for all of them.
EXTRA = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Mixture-of-experts models route each token to a few experts, so parameters grow while compute stays small.",
    "\u6df7\u5408\u4e13\u5bb6\u6a21\u578b\u628a\u6bcf\u4e2a\u8bcd\u5143\u9001\u5230\u5c11\u6570\u4e13\u5bb6\u3002" * 3,
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3001\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002" * 3,
    "\u041c\u043e\u0434\u0435\u043b\u044c \u0441\u043c\u0435\u0441\u0438 \u044d\u043a\u0441\u043f\u0435\u0440\u0442\u043e\u0432 " * 3,
    "0123456789 " * 4,
]


def corpus():
    text = [inspect.getdoc(m) or "" for m in (json, os, random, inspect, str, dict, list)]
    return TEXTS + EXTRA + text


def byte_level(kind):
    tok = Tokenizer(models.BPE(ignore_merges=(kind == "qwen2")))
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        specials = ["<|endoftext|>"]
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    # qwen2 stays within the shared mixtral fixture's vocabulary of 512, for the end-to-end generate check.
    trainer = trainers.BpeTrainer(vocab_size=500 if kind == "qwen2" else 900, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer)
    return tok


def sentencepiece(kind):
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    if kind == "llama":
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
        tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="\u2581", prepend_scheme="first"),
                                         decoders.ByteFallback(), decoders.Fuse()])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    # Leave out characters the texts use once or twice, so that byte fallback is exercised.
    trainer = trainers.BpeTrainer(vocab_size=420 if kind == "llama" else 1100, special_tokens=specials, show_progress=False, limit_alphabet=120)
    if kind == "llama":
        normalized = [t.replace(" ", "\u2581") for t in corpus()]
        tok.train_from_iterator(normalized, trainer)
    else:
        tok.train_from_iterator(corpus(), trainer)
    # The byte tokens are vocabulary entries, not added tokens, as in Llama's tokenizer.json.
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


# Random strings over an alphabet of the hard cases, for what the hand-written texts miss.
ALPHABET = (list("aAzZ09 '\t\n\r.,!?-_<>|/") + ["  ", "'s", "'LL", "\u00e9", "e\u0301", "\u0301", "\u00a0", "\u3000", "\u000b",
            "\u0085", "\u4e16", "\u754c", "\U0001f44d", "\U0001f3fd", "\u200d", "\u0663", "\u00bd", "\u2581",
            "<s>", "</s>", "<|im_end|>", "<|endoftext|>"])


def random_texts(rng, n=40):
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 24))) for _ in range(n)]


def cases(tok, seed):
    rng = random.Random(seed)
    out = []
    for text in TEXTS + random_texts(random.Random(1000 + seed)):
        enc = tok.encode(text, add_special_tokens=True)
        plain = tok.encode(text, add_special_tokens=False)
        out.append(dict(text=text, ids=enc.ids, tokens=enc.tokens, ids_without_special=plain.ids,
                        decoded=tok.decode(enc.ids, skip_special_tokens=True),
                        decoded_with_special=tok.decode(enc.ids, skip_special_tokens=False)))
    # Random id runs decode through every path: byte tokens that do not form UTF-8, specials, merges.
    size = tok.get_vocab_size()
    decode_only = []
    for n in (1, 2, 3, 5, 8, 13, 21):
        ids = [rng.randrange(size) for _ in range(n)]
        decode_only.append(dict(ids=ids, decoded=tok.decode(ids, skip_special_tokens=True),
                                decoded_with_special=tok.decode(ids, skip_special_tokens=False)))
    return dict(tokenizers_version=tokenizers.__version__, encode=out, decode=decode_only)


def main():
    outdir = sys.argv[1]
    makers = dict(qwen2=lambda: byte_level("qwen2"), gpt2=lambda: byte_level("gpt2"),
                  llama=lambda: sentencepiece("llama"), metaspace=lambda: sentencepiece("metaspace"),
                  converted=lambda: byte_level("gpt2"))
    for i, (name, make) in enumerate(makers.items()):
        if len(sys.argv) > 2 and name not in sys.argv[2:]:
            continue
        tok = make()
        d = os.path.join(outdir, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"))
        if name == "converted":
            path = os.path.join(d, "tokenizer.json")
            j = json.load(open(path, encoding="utf-8"))
            j["model"]["continuing_subword_prefix"] = ""
            j["model"]["end_of_word_suffix"] = ""
            with open(path, "w", encoding="utf-8") as f:
                json.dump(j, f, ensure_ascii=False, indent=2)
        # Round trip through the saved file, so the cases describe exactly what is committed.
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        with open(os.path.join(d, "cases.json"), "w", encoding="utf-8") as f:
            json.dump(cases(tok, seed=i), f, ensure_ascii=False, indent=1)
        print(name, tok.get_vocab_size(), "tokens")
    shared = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "fixtures", "hf", "mixtral")
    if os.path.isdir(shared) and (len(sys.argv) == 2 or "qwen2" in sys.argv[2:]):
        generate_with_text(shared, os.path.join(outdir, "qwen2", "tokenizer.json"), os.path.join(outdir, "generate_mixtral.json"))


def generate_with_text(model_dir, tokenizer_path, out_path):
    """`moe generate --prompt` end to end: the shared mixtral fixture with the qwen2 tokenizer, greedy, as
    transformers generates (stopping at generation_config's end-of-sequence token)."""
    import torch
    from transformers import AutoModelForCausalLM
    tok = Tokenizer.from_file(tokenizer_path)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    prompts = ["Hello world", "Mixture of experts: \u4f60\u597d \U0001f44d"]
    out = []
    for prompt in prompts:
        ids = tok.encode(prompt).ids
        seq = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)[0].tolist()
        new = seq[len(ids):]
        out.append(dict(prompt=prompt, prompt_ids=ids, new_ids=new, text=tok.decode(new, skip_special_tokens=True)))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
