// Runs GGUF files in the real llama.cpp (node-llama-cpp's prebuilt CPU build, pinned in package-lock.json) and
// prints what it did as one JSON object on stdout, for the tests and benchmarks to compare with our engine.
//
//   node llama_cpp_run.mjs JOB.json
//
// JOB: {"threads": 1, "runs": [RUN, ...]}; each RUN names a "model" file and asks for any of:
//   "tokenize":   ["text", ...]                 -> "tokens": [[id, ...], ...] (llama.cpp's tokenizer, special and added
//                                                 tokens recognised in the text, no BOS added)
//   "generate":   {"prompts": [[id, ...], ...], "tokens": N}
//                                                 -> "generated": [[id, ...], ...] greedy (temperature 0)
//   "score":      {"sequences": [[id, ...], ...], "top": K}
//                                                 -> "scores": per sequence, per position, the next-token distribution:
//                                                    {"argmax": id, "ids": [top K ids], "probs": [their probabilities],
//                                                     "full": [every probability by id] when "full": true}
//   "bench":      {"context": [256, 2048], "decode": 32, "vocab": V}
//                                                 -> "bench": [{"context", "prefill_tps", "decode_tps", "kv_cache"}, ...]
//                                                    (decode after a prefill of `context` tokens; ids below V)
// With "generate" or "score" the run gets "kv_cache": what llama.cpp logs about the KV buffer it allocated (MiB,
// cells, layers, K and V types and MiB); always "load_seconds", and on failure "error" (the run's other fields then
// missing). "kv_type" ("f32" default, "f16") sets the cache type; "context_size" the context (default: the longest
// sequence + 8, at least 256).
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import {readFileSync} from "node:fs";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const threads = job.threads ?? 1;

let logLines = [];
const llama = await getLlama({
    gpu: false,
    build: "never",
    logLevel: LlamaLogLevel.info,
    logger: (level, message) => { logLines.push(message); },
});

function kvCacheFromLog(lines) {
    const text = lines.join("");
    const size = /llama_kv_cache: size =\s*([\d.]+) MiB \(\s*(\d+) cells,\s*(\d+) layers[^)]*\),\s*K \((\w+)\):\s*([\d.]+) MiB,\s*V \((\w+)\):\s*([\d.]+) MiB/.exec(text);
    if (!size)
        return null;
    return {
        mib: Number(size[1]), cells: Number(size[2]), layers: Number(size[3]),
        k_type: size[4], k_mib: Number(size[5]), v_type: size[6], v_mib: Number(size[7]),
    };
}

// llama.cpp's log reaches JavaScript asynchronously: wait (up to 2 s) until the KV cache line of the context just
// created has arrived.
async function kvCacheLogged() {
    for (let waited = 0; waited < 2000; waited += 10) {
        const kv = kvCacheFromLog(logLines);
        if (kv)
            return kv;
        await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return null;
}

async function newContext(model, run, contextSize) {
    const kvType = (run.kv_type ?? "f32").toUpperCase();
    return model.createContext({
        contextSize,
        batchSize: Math.min(contextSize, 512),
        threads,
        flashAttention: run.flash_attention ?? false,
        experimentalKvCacheKeyType: kvType,
        experimentalKvCacheValueType: kvType,
        ignoreMemorySafetyChecks: true,
        failedCreationRemedy: false,
    });
}

async function greedy(sequence, prompt, count) {
    const out = [];
    if (count <= 0)
        return out;
    for await (const token of sequence.evaluate(prompt, {temperature: 0, yieldEogToken: true})) {
        out.push(token);
        if (out.length >= count)
            break;
    }
    return out;
}

async function score(sequence, ids, top, full) {
    const input = ids.map((id) => [id, {generateNext: {probabilities: true}}]);
    const results = await sequence.controlledEvaluate(input);
    return results.map((r) => {
        const probabilities = r.next.probabilities;
        const entries = [...probabilities.entries()].slice(0, top);
        const position = {argmax: entries[0][0], ids: entries.map((e) => e[0]), probs: entries.map((e) => e[1])};
        if (full) {
            const all = new Array(probabilities.size).fill(0);
            for (const [id, p] of probabilities)
                all[id] = p;
            position.full = all;
        }
        return position;
    });
}

async function bench(model, run) {
    const rows = [];
    const decode = run.bench.decode ?? 32;
    const vocab = run.bench.vocab ?? 256;
    for (const context of run.bench.context) {
        logLines = [];
        const ctx = await newContext(model, run, context + decode + 8);
        const kvCache = await kvCacheLogged();
        const sequence = ctx.getSequence();
        // Token ids cycling through the low range of the vocabulary: any valid ids will do for timing.
        const prompt = Array.from({length: context}, (_, i) => 3 + (i * 7919) % (vocab - 3));
        let t0 = performance.now();
        await sequence.evaluateWithoutGeneratingNewTokens(prompt);
        const prefill = (performance.now() - t0) / 1000;
        t0 = performance.now();
        let produced = 0;
        for await (const token of sequence.evaluate([prompt[0]], {temperature: 0, yieldEogToken: true})) {
            void token;
            if (++produced >= decode)
                break;
        }
        const decodeSeconds = (performance.now() - t0) / 1000;
        rows.push({context, prefill_tps: context / prefill, decode_tps: produced / decodeSeconds, decoded: produced,
                   kv_cache: kvCache});
        await ctx.dispose();
    }
    return rows;
}

const results = [];
for (const run of job.runs) {
    const result = {model: run.model};
    logLines = [];
    try {
        const t0 = performance.now();
        const model = await llama.loadModel({modelPath: run.model, useMmap: true});
        result.load_seconds = (performance.now() - t0) / 1000;
        if (run.tokenize)
            result.tokens = run.tokenize.map((text) => Array.from(model.tokenize(text, true)));
        if (run.generate || run.score) {
            const longest = Math.max(0, ...(run.score?.sequences ?? []).map((s) => s.length),
                                     ...(run.generate?.prompts ?? []).map((p) => p.length + run.generate.tokens));
            const ctx = await newContext(model, run, run.context_size ?? Math.max(256, longest + 8));
            result.kv_cache = await kvCacheLogged();
            const sequence = ctx.getSequence();
            if (run.generate) {
                result.generated = [];
                for (const prompt of run.generate.prompts) {
                    await sequence.clearHistory();
                    result.generated.push(await greedy(sequence, prompt, run.generate.tokens));
                }
            }
            if (run.score) {
                result.scores = [];
                for (const ids of run.score.sequences) {
                    await sequence.clearHistory();
                    result.scores.push(await score(sequence, ids, run.score.top ?? 5, run.score.full ?? false));
                }
            }
            await ctx.dispose();
        }
        if (run.bench) {
            result.bench = await bench(model, run);
        }
        await model.dispose();
    } catch (e) {
        result.error = String(e && e.message ? e.message : e);
        result.log_tail = logLines.slice(-20).join("");
    }
    results.push(result);
}
process.stdout.write(JSON.stringify({llama_cpp: "node-llama-cpp 3.21.1", threads, runs: results}) + "\n");
await llama.dispose();
