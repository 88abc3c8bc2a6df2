#!/usr/bin/env python3
"""Interoperability of mambaseq with Hugging Face transformers / tokenizers.

  mamba-to-hf  Checkpoints written by mambaseq load in transformers' MambaForCausalLM and
               give the same logits (and the same greedy continuation). With --mambaseq BIN
               the checkpoints and mambaseq's logits are made first (`mambaseq init`,
               `mambaseq score --logits-out`, `mambaseq generate --greedy --jsonl`);
               without it, WORK must already hold them (made elsewhere).
  hf-to-mamba  transformers writes a sharded BF16 checkpoint (untied head, use_bias,
               d_state 8, d_conv 3, dt_rank 5) plus its float32 logits, for mambaseq's
               tests (tests/data/hf-sharded).
  tokenizer    Encodes test strings with the `tokenizers` library and a tokenizer.json
               (for tests/data/bpe/expected.json), and compares with mambaseq's ids.

Exit status 1 when a comparison fails. Needs torch, transformers, safetensors, tokenizers.

Note: transformers 5.17 divides a loaded out_proj.weight by sqrt(num_hidden_layers) when the
config says "rescale_prenorm_residual": true (its post-load _init_weights pass rescales an
already loaded weight). mambaseq therefore writes false into every checkpoint's config (the
flag only shapes the initialisation); a checkpoint written with true shows exactly that
difference here.

  python3 scripts/hf_interop.py mamba-to-hf --mambaseq build/mambaseq --work /tmp/interop
"""
import argparse
import json
import os
import subprocess
import sys

# (name, mambaseq init arguments, greedy-generation check). Sizes with a vocabulary that is
# a multiple of 8 have no padding rows, so greedy decoding over all logits is the same task.
CONFIGS = [
    ("untied_bias_f32", "--d-model 48 --n-layer 2 --vocab-size 96 --untied --use-bias --d-state 8 --d-conv 3 "
                        "--dt-rank 5 --perturb 0.05 --seed 1", True),
    ("tied_bf16_sharded", "--d-model 64 --n-layer 3 --vocab-size 77 --dtype bf16 --max-shard-mb 0.05 "
                          "--perturb 0.05 --seed 2", False),
    ("tied_f16_noconvbias", "--d-model 32 --n-layer 2 --vocab-size 64 --no-conv-bias --d-state 4 --dtype f16 "
                            "--perturb 0.05 --seed 3", True),
]
IDS = [[1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8, 3, 2, 7, 9, 5],
       [7, 1, 8, 2, 8, 1, 8, 2, 8, 4],
       [11]]
GEN_PROMPTS = ["3 1 4 1 5 9 2 6", "2 7"]
GEN_TOKENS = 24


def run(cmd):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def prepare(binary, work):
    os.makedirs(work, exist_ok=True)
    ids_file = os.path.join(work, "ids.txt")
    with open(ids_file, "w") as f:
        f.write("\n".join(" ".join(map(str, s)) for s in IDS) + "\n")
    for name, args, gen in CONFIGS:
        d = os.path.join(work, name)
        run([binary, "init", "--out", d] + args.split())
        run([binary, "score", "--model", d, "--ids", ids_file, "--no-progress", "--logits-out",
             os.path.join(d, "mambaseq_logits.safetensors"), "-o", os.path.join(d, "scores.tsv")])
        if gen:
            cmd = [binary, "generate", "--model", d, "--greedy", "--jsonl", "-q", "-n", str(GEN_TOKENS)]
            for p in GEN_PROMPTS:
                cmd += ["--prompt-ids", p]
            print("+", " ".join(cmd), flush=True)
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            with open(os.path.join(d, "mambaseq_greedy.jsonl"), "w") as f:
                f.write(out)


def load_hf(d, torch, dtype):
    from transformers import MambaForCausalLM
    try:
        return MambaForCausalLM.from_pretrained(d, dtype=dtype).eval()
    except TypeError:  # older transformers
        return MambaForCausalLM.from_pretrained(d, torch_dtype=dtype).eval()


def mamba_to_hf(args):
    import torch
    from safetensors.torch import load_file
    if args.mambaseq:
        prepare(args.mambaseq, args.work)
    worst, ok = 0.0, True
    for name, _, gen in CONFIGS:
        d = os.path.join(args.work, name)
        model = load_hf(d, torch, torch.float32)
        ref = load_file(os.path.join(d, "mambaseq_logits.safetensors"))
        ids, off, ours = ref["input_ids"], ref["offsets"].tolist(), ref["logits"].double()
        md, rel = 0.0, 0.0
        with torch.no_grad():
            for k in range(len(off) - 1):
                x = ids[off[k]:off[k + 1]].unsqueeze(0)
                hf = model(x).logits[0].double()
                o = ours[off[k]:off[k + 1]]
                md = max(md, (hf - o).abs().max().item())
                rel = max(rel, ((hf - o).norm() / hf.norm()).item())
        worst = max(worst, md)
        good = rel < 1e-4
        ok &= good
        print(f"mamba-to-hf {name}: max |logit difference| {md:.3e}, relative L2 {rel:.3e} "
              f"({'ok' if good else 'FAIL'})", flush=True)
        if gen:
            events = [json.loads(l) for l in open(os.path.join(d, "mambaseq_greedy.jsonl")) if l.strip()]
            for k, p in enumerate(GEN_PROMPTS):
                mine = [e["id"] for e in events if e.get("seq") == k and "id" in e]
                x = torch.tensor([[int(t) for t in p.split()]])
                with torch.no_grad():
                    out = model.generate(x, max_new_tokens=GEN_TOKENS, do_sample=False, eos_token_id=None,
                                         pad_token_id=0)
                theirs = out[0, x.shape[1]:].tolist()
                same = theirs == mine
                ok &= same
                print(f"  greedy continuation of prompt {k}: {'identical' if same else 'DIFFERENT'} "
                      f"({len(mine)} tokens){'' if same else f' mambaseq {mine} transformers {theirs}'}", flush=True)
    print(f"mamba-to-hf: worst max |logit difference| {worst:.3e} -> {'PASS' if ok else 'FAIL'}", flush=True)
    return 0 if ok else 1


def hf_to_mamba(args):
    import torch
    from safetensors.torch import save_file
    from transformers import MambaConfig, MambaForCausalLM
    torch.manual_seed(0)
    cfg = MambaConfig(vocab_size=56, hidden_size=32, state_size=8, num_hidden_layers=2, conv_kernel=3, expand=2,
                      time_step_rank=5, use_bias=True, use_conv_bias=True, tie_word_embeddings=False,
                      layer_norm_epsilon=1e-5, pad_token_id=0, bos_token_id=0, eos_token_id=0)
    m = MambaForCausalLM(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m = m.to(torch.bfloat16)
    m.save_pretrained(args.out, max_shard_size="30KB")  # safetensors (the only format in v5)
    m32 = load_hf(args.out, torch, torch.float32)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 56, (2, 21), generator=g)
    with torch.no_grad():
        logits = m32(ids).logits.float().contiguous()
    save_file({"input_ids": ids.to(torch.int64).contiguous(), "logits": logits},
              os.path.join(args.out, "reference.safetensors"))
    print("hf-to-mamba: wrote", sorted(os.listdir(args.out)), flush=True)
    return 0


def tokenizer(args):
    from tokenizers import Tokenizer
    tk = Tokenizer.from_file(args.tokenizer_json)
    cases = json.load(open(args.cases))
    out = []
    for text in cases:
        enc = tk.encode(text, add_special_tokens=False)
        out.append({"text": text, "ids": enc.ids})
    with open(args.out, "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    ok = True
    if args.ours:
        ours = {c["text"]: c["ids"] for c in json.load(open(args.ours))}
        bad = [c for c in out if ours.get(c["text"]) != c["ids"]]
        for c in bad:
            print(f"tokenizer MISMATCH {c['text']!r}: tokenizers {c['ids']} mambaseq {ours.get(c['text'])}")
        ok = not bad
        print(f"tokenizer: {len(out) - len(bad)}/{len(out)} cases identical to tokenizers "
              f"{getattr(sys.modules.get('tokenizers'), '__version__', '?')}", flush=True)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("mamba-to-hf")
    a.add_argument("--work", required=True)
    a.add_argument("--mambaseq", help="path of the mambaseq binary (makes the checkpoints first)")
    b = sub.add_parser("hf-to-mamba")
    b.add_argument("--out", required=True)
    c = sub.add_parser("tokenizer")
    c.add_argument("--tokenizer-json", required=True)
    c.add_argument("--cases", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--ours", help="mambaseq's encodings [{text, ids}] to compare with")
    args = ap.parse_args()
    return {"mamba-to-hf": mamba_to_hf, "hf-to-mamba": hf_to_mamba, "tokenizer": tokenizer}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
