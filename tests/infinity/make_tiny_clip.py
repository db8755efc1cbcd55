"""Write a small random-init CLIP model directory that ``infinity_emb`` can serve, offline.

Run with the interpreter of the infinity venv (it has ``transformers``; the project's venv does not)::

    .venv-infinity/bin/python tests/infinity/make_tiny_clip.py OUT_DIR
    .venv-infinity/bin/python tests/infinity/make_tiny_clip.py OUT_DIR --vit-b-32

``--vit-b-32``: the image tower of open_clip's ViT-B-32 instead (224 px, 32 px patches, 12 layers of
width 768, GELU, 512-d embeddings), at random init, for bench/vendor_throughput.py to time infinity
on the architecture the vendor serves (the text tower stays tiny; the benchmark sends images).

No hub access is needed: the byte-level BPE tokenizer's vocabulary is made here (the 256 byte
symbols, each also with CLIP's end-of-word mark ``</w>``, a few hundred merges learnt from a fixed
word list, and CLIP's two special tokens), the weights are ``CLIPModel(config)`` with seed 0, and the
image processor is CLIP's with a small input size. ``CLIPProcessor.save_pretrained`` writes what
``AutoProcessor.from_pretrained`` (infinity's loader) reads: ``preprocessor_config.json``,
``tokenizer.json`` (fast), ``vocab.json`` + ``merges.txt`` (slow), the special tokens.
"""

from __future__ import annotations

import collections
import json
import sys
import tempfile
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizerFast
from transformers.models.clip.tokenization_clip import bytes_to_unicode

#: the embedding size infinity will serve (the test checks it)
PROJECTION_DIM = 64
IMAGE_SIZE = 32
WORDS = (
    "a photo of the circle square triangle sketch painting cartoon art drawing picture image "
    "shape red green blue small large dog cat house tree car boat"
).split()


def bpe_vocab(n_merges: int = 200) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's byte-level BPE over ``WORDS``: greedy most-frequent-pair merges, words end in ``</w>``."""
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols]
    words = collections.Counter()
    for w in WORDS:
        chars = [bytes_to_unicode()[b] for b in w.encode("utf-8")]
        words[tuple(chars[:-1] + [chars[-1] + "</w>"])] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for word, freq in words.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += freq
        if not pairs:
            break
        best = max(sorted(pairs), key=pairs.__getitem__)
        merges.append(best)
        vocab_list.append("".join(best))
        merged = collections.Counter()
        for word, freq in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            merged[tuple(out)] += freq
        words = merged
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}, merges


#: open_clip ViT-B-32's image tower in transformers' terms
VIT_B_32 = {
    "image_size": 224,
    "patch_size": 32,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "hidden_act": "gelu",
}


def build(out: Path, vit_b_32: bool = False) -> None:
    image_size = VIT_B_32["image_size"] if vit_b_32 else IMAGE_SIZE
    vocab, merges = bpe_vocab()
    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n", encoding="utf-8")
        tokenizer = CLIPTokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file))
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    config = CLIPConfig(
        text_config={
            "vocab_size": len(vocab),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": vocab["<|startoftext|>"],
            "eos_token_id": vocab["<|endoftext|>"],
            "pad_token_id": vocab["<|endoftext|>"],
        },
        vision_config=VIT_B_32
        if vit_b_32
        else {
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        projection_dim=512 if vit_b_32 else PROJECTION_DIM,
    )
    torch.manual_seed(0)
    model = CLIPModel(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(out)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--vit-b-32"]):
        sys.exit("usage: make_tiny_clip.py OUT_DIR [--vit-b-32]")
    build(Path(sys.argv[1]), vit_b_32=len(sys.argv) == 3)
