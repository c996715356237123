#!/usr/bin/env python3
# Shipped with MLA Workbench and copied into every MLA export (recovery/distill.py); see recovery/README.md.
"""Recovers a converted (MLA) model by distillation from the original: KL(teacher || student) on the teacher's
next-token distributions, optionally plus the language-modelling loss, with AdamW and a cosine schedule.

One process on a CPU or a GPU:

    python3 recovery/distill.py --teacher ORIGINAL --student EXPORT --ids train.txt --steps 1000 --out RECOVERED

Several processes (DDP by default, --strategy fsdp to shard the student), on one machine or many:

    torchrun --nproc_per_node 8 recovery/distill.py ... [--strategy fsdp]
    deepspeed --num_gpus 8 recovery/distill.py ... --deepspeed recovery/deepspeed_config.json

The teacher is the original model as a Hugging Face folder. A llama2.c .bin or a GGUF file is first written as a
folder by the workbench, unchanged (every RoPE pair kept, no latent: the exact original):

    mla-workbench-cli convert MODEL.bin --out TEACHER --rope-strategy high --rope-pairs HEAD_DIM/2 --svd none

Data: --ids FILE (one sequence of token ids per line, the workbench's --ids format), --text FILE (tokenised with the
student's tokenizer; needs transformers) or --sample N (N sequences drawn from the teacher at temperature 1).
Sequences longer than --seq-len are cut into windows. The held-out set is --eval-ids FILE, else --eval-sequences
sequences drawn apart from the training data; the KL reported on it is computed as `mla-workbench-cli eval
--reference` computes it (per position of every window but the last, mean over positions, nats), so that

    mla-workbench-cli eval RECOVERED --reference ORIGINAL --ids HELDOUT

reports the same number. The result is an export folder (same tensor names, same config.json, written under a
temporary name and renamed) that the workbench and modeling_mla.py load. Progress goes to stdout, one line per
logged step; the last line is one JSON object: kl_before, kl_after, tokens, out and more.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F


def _import_modeling(student):
    """modeling_mla.py next to this recipe's folder (resources/ or the export), else the student's own copy."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for folder in (here, student):
        if os.path.isfile(os.path.join(folder, "modeling_mla.py")):
            sys.path.insert(0, folder)
            import modeling_mla
            return modeling_mla
    raise SystemExit(f"distill.py: modeling_mla.py not found next to {here} or in {student}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Distil the original model into its MLA conversion (see the docstring).")
    p.add_argument("--teacher", required=True, help="the original model (Hugging Face folder)")
    p.add_argument("--student", required=True, help="the MLA export to recover")
    p.add_argument("--out", required=True, help="folder to write the recovered model into (must not exist or be empty)")
    data = p.add_mutually_exclusive_group(required=True)
    data.add_argument("--ids", help="training token ids, one sequence per line")
    data.add_argument("--text", help="training text, tokenised with the student's tokenizer (needs transformers)")
    data.add_argument("--sample", type=int, help="draw this many training sequences from the teacher")
    p.add_argument("--eval-ids", help="held-out token ids, one sequence per line (default: drawn apart from training)")
    p.add_argument("--eval-sequences", type=int, default=16, help="held-out sequences when no --eval-ids (default 16)")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps")
    p.add_argument("--batch", type=int, default=16, help="sequences per optimizer step, over all processes (default 16)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step (default 1)")
    p.add_argument("--seq-len", type=int, default=256, help="training sequence length (default 256, at most the context)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--min-lr-ratio", type=float, default=0.1, help="cosine floor as a fraction of --lr (default 0.1)")
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (default 0)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--clip", type=float, default=1.0, help="gradient norm clip, 0 = off (default 1)")
    p.add_argument("--train", choices=("attention", "all"), default="attention",
                   help="parameters that train: the attention layers (default) or all")
    p.add_argument("--lm-weight", type=float, default=0.0, help="weight of the next-token loss added to the KL (default 0)")
    p.add_argument("--temperature", type=float, default=1.0, help="distillation temperature (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed for data order, sampling and dropout-free init (default 0)")
    p.add_argument("--strategy", choices=("auto", "ddp", "fsdp"), default="auto",
                   help="with several processes: ddp (auto) or fsdp (shards the student)")
    p.add_argument("--deepspeed", metavar="CONFIG", help="train through DeepSpeed with this config file")
    p.add_argument("--device", default="auto", help="auto (a GPU per process when there is one), cpu or cuda")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="training compute precision (autocast; default fp32); held-out measures run in float32")
    p.add_argument("--teacher-dtype", choices=("fp32", "bf16"), default="fp32",
                   help="teacher weights in memory (default fp32, as the workbench evaluates; bf16 halves them)")
    p.add_argument("--grad-checkpoint", action="store_true", help="recompute activations in the backward pass")
    p.add_argument("--log-every", type=int, default=10, help="progress line every N steps (default 10)")
    p.add_argument("--eval-every", type=int, default=0, help="held-out KL every N steps, 0 = only before and after")
    p.add_argument("--save-every", type=int, default=0, help="also write OUT-stepN checkpoints every N steps")
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = p.parse_args(argv)
    for name in ("steps", "batch", "grad_accum", "seq_len", "eval_sequences"):
        if getattr(args, name) < 1 and not (name == "seq_len" and getattr(args, name) >= 2):
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.seq_len < 2:
        p.error("--seq-len must be at least 2")
    return args


# ------------------------------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------------------------------

class Dist:
    """Who this process is, and the few collectives the recipe needs (no-ops in one process)."""

    def __init__(self, args):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", args.local_rank or 0))
        want_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
        if want_cuda:
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 or args.deepspeed:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if args.deepspeed:
                import deepspeed
                deepspeed.init_distributed(dist_backend=backend)
            elif not torch.distributed.is_initialized():
                torch.distributed.init_process_group(backend)
        self.strategy = "deepspeed" if args.deepspeed else (
            "single" if self.world == 1 else ("ddp" if args.strategy == "auto" else args.strategy))

    @property
    def main(self):
        return self.rank == 0

    def sum(self, values):
        """Element-wise sum over processes of a list of floats."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(t)
        return t.tolist()

    def gather_lists(self, items):
        if self.world == 1:
            return [items]
        out = [None] * self.world
        torch.distributed.all_gather_object(out, items)
        return out

    def barrier(self):
        if self.world > 1:
            torch.distributed.barrier()

    def close(self):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def say(dist, *parts):
    if dist.main:
        print(*parts, flush=True)


# ------------------------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------------------------

def read_ids(path, vocab):
    """Sequences of a token-id file (one per line, blank lines skipped), checked against the vocabulary."""
    sequences = []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise SystemExit(f"distill.py: {path}: cannot open ({e.strerror})")
    with f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if not words:
                continue
            try:
                ids = [int(w) for w in words]
            except ValueError:
                bad = next(w for w in words if not w.lstrip("-").isdigit())
                raise SystemExit(f"distill.py: {path}: line {number}: '{bad}' is not a token id")
            for i in ids:
                if i < 0 or i >= vocab:
                    raise SystemExit(f"distill.py: {path}: line {number} holds id {i}, outside the vocabulary of "
                                     f"{vocab} ids")
            sequences.append(ids)
    if not sequences:
        raise SystemExit(f"distill.py: {path}: holds no token ids")
    return sequences


def windows(sequences, length):
    """Pieces of at most `length` ids (the last, shorter piece kept when it has two or more)."""
    out = []
    for s in sequences:
        for begin in range(0, len(s), length):
            piece = s[begin:begin + length]
            if len(piece) >= 2:
                out.append(piece)
    return out


def text_sequences(path, student, length, bos):
    try:
        tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(student)
    except ImportError:
        raise SystemExit("distill.py: --text needs Hugging Face transformers for the tokenizer; give --ids instead "
                         "(the workbench writes token ids, e.g. mla-workbench-cli generate --json)")
    with open(path, encoding="utf-8") as f:
        ids = tokenizer(f.read(), add_special_tokens=False)["input_ids"]
    step = length - (1 if bos is not None else 0)
    return [([bos] if bos is not None else []) + ids[b:b + step] for b in range(0, len(ids), step)
            if len(ids[b:b + step]) >= 2]


@torch.no_grad()
def sample_sequences(modeling, teacher, count, length, bos, seed, dist, chunk=64):
    """`count` sequences of `length` tokens from BOS at temperature 1. Fixed chunks with their own seeds, shared out
    over the processes, so the data does not depend on how many processes draw it."""
    mine = []
    chunks = range(0, count, chunk)
    for index, begin in enumerate(chunks):
        if index % dist.world != dist.rank:
            continue
        n = min(chunk, count - begin)
        generator = torch.Generator(device="cpu").manual_seed(seed * 1000003 + index)
        ids = torch.full((n, 1), bos, dtype=torch.long, device=dist.device)
        cache = modeling.MlaCache()
        logits = teacher(ids, past_key_values=cache, use_cache=True).logits[:, -1]
        for _ in range(length - 1):
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            nxt = torch.multinomial(probs, 1, generator=generator).to(dist.device)
            ids = torch.cat([ids, nxt], dim=1)
            logits = teacher(nxt, past_key_values=cache, use_cache=True).logits[:, -1]
        mine.append((index, ids.cpu().tolist()))
    gathered = sorted(item for part in dist.gather_lists(mine) for item in part)
    return [s for _, rows in gathered for s in rows]


class BatchStream:
    """The global batch of every step, the same whatever the number of processes: a seeded shuffle per epoch."""

    def __init__(self, sequences, batch, seed):
        self.sequences = sequences
        self.batch = batch
        self.generator = torch.Generator().manual_seed(seed)
        self.order = []

    def next(self):
        out = []
        while len(out) < self.batch:
            if not self.order:
                self.order = torch.randperm(len(self.sequences), generator=self.generator).tolist()
            out.append(self.sequences[self.order.pop(0)])
        return out


def collate(sequences, device):
    """Right-padded ids [B, T] and the mask of positions that predict a real next token [B, T-1]."""
    T = max(len(s) for s in sequences)
    ids = torch.zeros(len(sequences), T, dtype=torch.long)
    scored = torch.zeros(len(sequences), T - 1, dtype=torch.bool)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s)
        scored[i, :len(s) - 1] = True
    return ids.to(device), scored.to(device)


# ------------------------------------------------------------------------------------------------------------------
# Losses and the held-out measure
# ------------------------------------------------------------------------------------------------------------------

def token_kl(student_logits, teacher_logits, temperature=1.0):
    """KL(teacher || student) per position, nats (times T^2 at temperature T, as distillation does)."""
    t = temperature
    log_q = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p = F.log_softmax(teacher_logits.float() / t, dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1) * (t * t)


@torch.no_grad()
def evaluate(student, teacher, sequences, context):
    """KL(teacher || student), perplexities and top-1 agreement exactly as the workbench's eval --reference: every
    sequence in consecutive windows of the shorter context, every position but the last, in float64, mean over
    positions."""
    kl = nll_s = nll_t = agree = positions = 0.0
    for s in sequences:
        w = min(len(s), context) if context > 0 else len(s)
        for begin in range(0, len(s) - 1, w):
            piece = s[begin:begin + w]
            if len(piece) < 2:
                continue
            ids = torch.tensor([piece], device=next(student.parameters()).device)
            a = student(ids).logits[0, :-1].double()
            b = teacher(ids).logits[0, :-1].double()
            la, lb = torch.log_softmax(a, -1), torch.log_softmax(b, -1)
            kl += (lb.exp() * (lb - la)).sum(-1).clamp_min(0.0).sum().item()
            agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
            target = ids[0, 1:, None]
            nll_s -= la.gather(-1, target).sum().item()
            nll_t -= lb.gather(-1, target).sum().item()
            positions += len(piece) - 1
    return {"kl": kl / positions, "ppl": math.exp(nll_s / positions), "reference_ppl": math.exp(nll_t / positions),
            "top1": agree / positions, "positions": int(positions)}


# ------------------------------------------------------------------------------------------------------------------
# Models under the chosen strategy
# ------------------------------------------------------------------------------------------------------------------

def select_trainable(model, which):
    names = []
    for name, param in model.named_parameters():
        param.requires_grad = which == "all" or ".self_attn." in name
        if param.requires_grad:
            names.append(name)
    if not names:
        raise SystemExit("distill.py: no parameter to train")
    return names


def wrap_fsdp(model, dist, modeling, precision):
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, MixedPrecision
        from torch.distributed.fsdp.wrap import lambda_auto_wrap_policy
    except Exception as e:  # torch 1.13 on Python 3.11 fails inside its own dataclasses
        raise SystemExit(f"distill.py: FSDP cannot be imported in this PyTorch ({type(e).__name__}: {e}); "
                         "use --strategy ddp")
    import functools
    import inspect
    # Each unit's parameters must all train or all stay frozen (flat parameters before use_orig_params): attention,
    # feed-forward and the rest are separate units.
    units = (modeling.Mha2MlaAttention, modeling.DenseAttention, modeling.MlaMLP)
    policy = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: isinstance(m, units))
    kwargs = {"auto_wrap_policy": policy}
    if "use_orig_params" in inspect.signature(FSDP.__init__).parameters:
        kwargs["use_orig_params"] = True
    if dist.device.type == "cuda":
        kwargs["device_id"] = dist.device
    if precision == "bf16":
        kwargs["mixed_precision"] = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                                                   buffer_dtype=torch.bfloat16)
    return FSDP(model, **kwargs)


def full_state_dict(model, dist):
    """The whole student's tensors on the main process (None elsewhere), whatever the wrapping."""
    if dist.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP, StateDictType, FullStateDictConfig
        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT,
                                  FullStateDictConfig(offload_to_cpu=True, rank0_only=True)):
            state = model.state_dict()
        return {k.replace("_fsdp_wrapped_module.", ""): v for k, v in state.items()} if dist.main else None
    module = model.module if hasattr(model, "module") else model
    return {k: v.detach().cpu() for k, v in module.state_dict().items()} if dist.main else None


def write_checkpoint(modeling, state, student_model, args, folder, summary):
    """The student's export folder again, with the trained tensors: same names, same config.json, its other files
    (tokenizer, modeling file, this recipe) copied, the recovery recorded in README.md and recovery.json."""
    raw = student_model
    config = dict(raw.source_config)
    dtype = raw.stored_dtype
    if raw.config.tie_word_embeddings:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}
    extra = {"recovery.json": json.dumps(summary, indent=2) + "\n"}
    readme = os.path.join(args.student, "README.md")
    text = open(readme, encoding="utf-8").read() if os.path.isfile(readme) else ""
    extra["README.md"] = text + recovery_markdown(summary)
    modeling.write_checkpoint_folder(state, config, folder, source_folder=args.student, dtype=dtype, extra_files=extra,
                                     recipe_folder=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recovery_markdown(s):
    lines = ["", "## Recovery", "",
             f"Distilled from `{s['teacher']}` with `recovery/distill.py` for {s['steps']} steps on {s['tokens']} "
             f"training tokens ({s['data']}), training {s['train']} parameters, on {s['world_size']} process(es) "
             f"({s['strategy']}).", "",
             "| held-out ({} positions) | before | after |".format(s["eval_positions"]), "|---|---|---|",
             f"| KL(original ‖ model), nats/token | {s['kl_before']:.4f} | {s['kl_after']:.4f} |",
             f"| perplexity (original {s['reference_ppl']:.3f}) | {s['ppl_before']:.3f} | {s['ppl_after']:.3f} |",
             f"| top-1 agreement | {s['top1_before']:.3f} | {s['top1_after']:.3f} |", ""]
    return "\n".join(lines)


def prepare_output(args, dist):
    out = os.path.abspath(args.out)
    for source in (args.student, args.teacher):
        src = os.path.abspath(source)
        if out == src or out.startswith(src + os.sep):
            raise SystemExit(f"distill.py: --out {args.out} is inside an input ({source}); inputs are never written")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not args.force:
        raise SystemExit(f"distill.py: {args.out}: exists and is not empty (use --force to replace it)")
    return out


# ------------------------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    modeling = _import_modeling(args.student)
    dist = Dist(args)
    try:
        return run(args, modeling, dist)
    except modeling.CheckpointError as e:
        raise SystemExit(f"distill.py: {e}")
    finally:
        dist.close()


def run(args, modeling, dist):
    started = time.time()
    out = prepare_output(args, dist)
    if os.path.isfile(args.teacher):
        raise SystemExit(f"distill.py: {args.teacher} is a file; the teacher must be a Hugging Face folder. Write a "
                         "llama2.c .bin or a GGUF as one, unchanged, with: mla-workbench-cli convert "
                         f"{args.teacher} --out TEACHER --rope-strategy high --rope-pairs HEAD_DIM/2 --svd none")
    torch.manual_seed(args.seed)
    student = modeling.MlaForCausalLM.from_folder(args.student, dtype=torch.float32, device=dist.device,
                                                  mla_form="expanded")
    teacher_dtype = torch.bfloat16 if args.teacher_dtype == "bf16" else torch.float32
    teacher = modeling.MlaForCausalLM.from_folder(args.teacher, dtype=teacher_dtype, device=dist.device,
                                                  mla_form="expanded")
    for p in teacher.parameters():
        p.requires_grad = False
    sc, tc = student.config, teacher.config
    if sc.vocab_size != tc.vocab_size:
        raise SystemExit(f"distill.py: the student has {sc.vocab_size} token ids, the teacher {tc.vocab_size}")
    contexts = [c.max_position_embeddings for c in (sc, tc) if c.max_position_embeddings]
    context = min(contexts) if contexts else 0
    seq_len = min(args.seq_len, context) if context else args.seq_len
    bos = getattr(sc, "bos_token_id", None)
    if isinstance(bos, list):
        bos = bos[0] if bos else None

    # Data: training sequences and the held-out set, identical on every process.
    if args.ids:
        train = windows(read_ids(args.ids, sc.vocab_size), seq_len)
        data = f"token ids from {os.path.basename(args.ids)}"
    elif args.text:
        train = text_sequences(args.text, args.student, seq_len, bos)
        data = f"text from {os.path.basename(args.text)}"
    else:
        if bos is None:
            raise SystemExit("distill.py: --sample needs a bos_token_id in the student's config.json")
        say(dist, f"sampling {args.sample} sequences of {seq_len} tokens from the teacher")
        train = sample_sequences(modeling, teacher, args.sample, seq_len, bos, args.seed, dist)
        data = f"{args.sample} sequences sampled from the teacher (seed {args.seed})"
    if args.eval_ids:
        held_out = read_ids(args.eval_ids, sc.vocab_size)
    elif args.sample:
        held_out = sample_sequences(modeling, teacher, args.eval_sequences, seq_len, bos, args.seed + 7777, dist)
    else:
        if len(train) <= args.eval_sequences:
            raise SystemExit(f"distill.py: {len(train)} training sequences cannot spare {args.eval_sequences} for the "
                             "held-out set; give --eval-ids or fewer --eval-sequences")
        held_out, train = train[-args.eval_sequences:], train[:-args.eval_sequences]

    per_rank = args.batch // (dist.world * args.grad_accum)
    if per_rank * dist.world * args.grad_accum != args.batch:
        raise SystemExit(f"distill.py: --batch {args.batch} must be a multiple of processes ({dist.world}) x "
                         f"--grad-accum ({args.grad_accum})")

    trainable = select_trainable(student, args.train)
    if args.grad_checkpoint:
        student.model.gradient_checkpointing = True
    before = evaluate(student, teacher, held_out, context)
    say(dist, f"held-out before: kl {before['kl']:.6f} ppl {before['ppl']:.4f} (original {before['reference_ppl']:.4f}) "
              f"top1 {before['top1']:.4f} over {before['positions']} positions")

    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=args.weight_decay)

    def lr_factor(step):
        if args.warmup and step < args.warmup:
            return (step + 1) / args.warmup
        progress = (step - args.warmup) / max(1, args.steps - args.warmup)
        return args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    model = student
    if dist.strategy == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(
            student, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    elif dist.strategy == "fsdp":
        model = wrap_fsdp(student, dist, modeling, args.precision)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    elif dist.strategy == "deepspeed":
        import deepspeed
        with open(args.deepspeed, encoding="utf-8") as f:
            ds_config = json.load(f)
        # The recipe's own batch, accumulation and clipping win over the file's, so that every launcher trains the same.
        ds_config.update({"train_micro_batch_size_per_gpu": per_rank, "gradient_accumulation_steps": args.grad_accum,
                          "train_batch_size": args.batch, "gradient_clipping": args.clip})
        ds_config.setdefault("bf16", {})["enabled"] = args.precision == "bf16"
        model, optimizer, _, scheduler = deepspeed.initialize(model=student, model_parameters=params,
                                                              optimizer=optimizer, lr_scheduler=scheduler,
                                                              config=ds_config)

    stream = BatchStream(train, args.batch, args.seed)
    autocast = (torch.autocast(device_type=dist.device.type, dtype=torch.bfloat16) if args.precision == "bf16"
                else _NoContext())
    losses, kls, evals = [], [], []
    tokens = 0
    say(dist, f"training {len(trainable)} tensors ({sum(p.numel() for p in params)} parameters on this process) "
              f"on {len(train)} sequences, {dist.world} process(es), strategy {dist.strategy}")
    for step in range(args.steps):
        global_batch = stream.next()
        scored_total = sum(len(s) - 1 for s in global_batch)
        tokens += sum(len(s) for s in global_batch)
        local_kl = local_loss = 0.0
        model.train()
        for micro in range(args.grad_accum):
            first = (micro * dist.world + dist.rank) * per_rank
            ids, scored = collate(global_batch[first:first + per_rank], dist.device)
            with torch.no_grad(), autocast:
                teacher_logits = teacher(ids).logits[:, :-1]
            sync = micro == args.grad_accum - 1 or dist.strategy in ("single", "deepspeed")
            with (model.no_sync() if not sync else _NoContext()), autocast:
                logits = model(ids).logits[:, :-1]
                kl = (token_kl(logits, teacher_logits, args.temperature) * scored).sum()
                loss = kl
                if args.lm_weight:
                    ce = F.cross_entropy(logits.float().transpose(1, 2), ids[:, 1:], reduction="none")
                    loss = loss + args.lm_weight * (ce * scored).sum()
                # Each process adds its share of the global mean: gradients are averaged over processes (and
                # DeepSpeed divides by the accumulation steps), so this scale makes every set-up equal to one process
                # taking the mean over all scored positions of the step.
                scale = dist.world / scored_total
                if dist.strategy == "deepspeed":
                    scale *= args.grad_accum
                if dist.strategy == "deepspeed":
                    model.backward(loss * scale)
                    model.step()
                else:
                    (loss * scale).backward()
            local_kl += kl.item()
            local_loss += loss.item()
        if dist.strategy != "deepspeed":
            if args.clip > 0:
                if dist.strategy == "fsdp":
                    model.clip_grad_norm_(args.clip)
                else:
                    torch.nn.utils.clip_grad_norm_(params, args.clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        kl_sum, loss_sum = dist.sum([local_kl, local_loss])
        losses.append(loss_sum / scored_total)
        kls.append(kl_sum / scored_total)
        if (step + 1) % args.log_every == 0 or step == 0 or step + 1 == args.steps:
            say(dist, f"step {step + 1}/{args.steps} loss {losses[-1]:.9g} kl {kls[-1]:.9g} "
                      f"lr {scheduler.get_last_lr()[0]:.3g} tokens {tokens} elapsed {time.time() - started:.1f}s")
        if args.eval_every and (step + 1) % args.eval_every == 0 and step + 1 < args.steps:
            e = evaluate(model if dist.strategy == "fsdp" else student, teacher, held_out, context)
            evals.append({"step": step + 1, "tokens": tokens, **e})
            say(dist, f"eval step {step + 1} tokens {tokens} kl {e['kl']:.6f} ppl {e['ppl']:.4f} top1 {e['top1']:.4f}")
        if args.save_every and (step + 1) % args.save_every == 0 and step + 1 < args.steps:
            state = full_state_dict(model, dist)
            if dist.main:
                partial = {"steps": step + 1, "tokens": tokens, "kl_before": before["kl"]}
                modeling.write_checkpoint_folder(
                    {k: v for k, v in state.items() if not (student.config.tie_word_embeddings and k == "lm_head.weight")},
                    dict(student.source_config), f"{out}-step{step + 1}", source_folder=args.student,
                    dtype=student.stored_dtype, extra_files={"recovery.json": json.dumps(partial, indent=2) + "\n"},
                    recipe_folder=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                say(dist, f"checkpoint {out}-step{step + 1}")
            dist.barrier()

    model.eval()
    after = evaluate(model if dist.strategy == "fsdp" else student, teacher, held_out, context)
    say(dist, f"held-out after: kl {after['kl']:.6f} ppl {after['ppl']:.4f} top1 {after['top1']:.4f}")
    summary = {
        "kl_before": before["kl"], "kl_after": after["kl"], "tokens": tokens, "out": out,
        "ppl_before": before["ppl"], "ppl_after": after["ppl"], "reference_ppl": before["reference_ppl"],
        "top1_before": before["top1"], "top1_after": after["top1"], "eval_positions": before["positions"],
        "eval_sequences": len(held_out), "train_sequences": len(train), "steps": args.steps, "batch": args.batch,
        "grad_accum": args.grad_accum, "seq_len": seq_len, "lr": args.lr, "train": args.train,
        "lm_weight": args.lm_weight, "seed": args.seed, "world_size": dist.world, "strategy": dist.strategy,
        "teacher": os.path.abspath(args.teacher), "student": os.path.abspath(args.student), "data": data,
        "seconds": round(time.time() - started, 3), "losses": losses, "kls": kls, "evals": evals,
    }
    state = full_state_dict(model, dist)
    if dist.main:
        write_checkpoint(modeling, state, student, args, out, summary)
        print(json.dumps(summary), flush=True)
    dist.barrier()
    return 0


class _NoContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


if __name__ == "__main__":
    sys.exit(main())
