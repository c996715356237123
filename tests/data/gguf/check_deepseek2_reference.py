#!/usr/bin/python3
"""An independent reference of llama.cpp's deepseek2 forward (src/models/deepseek2.cpp of the pinned build), in
numpy float64, run on a deepseek2 GGUF and compared with the real llama.cpp's next-token probabilities on the same
ids (tests/llama_cpp/run.sh). Written from llama.cpp's graph, not from our engine: q = attn_q x (or
attn_q_b RMSNorm(attn_q_a x)), per head [nope | rope]; [c | k_pe] = attn_kv_a_mqa x; c = RMSNorm(c) * attn_kv_a_norm
(the model's rms eps); k_pe and each head's q_pe rotated by adjacent pairs (2i, 2i+1) at angle pos * base^(-2i/rope);
k_nope_h = attn_k_b[h]^T c, v_h = attn_v_b[h] c (or both from attn_kv_b in the older layout); scores scaled by
(nope + rope)^-1/2. Development check of the layout facts the exporter and reader rely on (2026-12: the four
fixtures agree to 1e-6 and better):

  git clone tests/llama_cpp/node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llama-src
  /usr/bin/python3 tests/data/gguf/check_deepseek2_reference.py /tmp/llama-src/gguf-py tests/data/gguf/deepseek2_dense.gguf 1,262,263,264
"""
import sys, json, subprocess, tempfile
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
import gguf
path = sys.argv[2]
ROOT = Path(__file__).resolve().parents[3]
r = gguf.GGUFReader(path)
kv = {f.name: f for f in r.fields.values()}
def val(k):
    f = kv[k]; return f.parts[f.data[0]][0] if len(f.data)==1 else None
p='deepseek2.'
hidden=int(val(p+'embedding_length')); heads=int(val(p+'attention.head_count')); L=int(val(p+'block_count'))
kvl=int(val(p+'attention.kv_lora_rank')); rope=int(val(p+'rope.dimension_count'))
absorbed = (p+'attention.key_length_mla') in kv
if absorbed:
    kmla=int(val(p+'attention.key_length_mla')); v=int(val(p+'attention.value_length_mla'))
else:
    kmla=int(val(p+'attention.key_length')); v=int(val(p+'attention.value_length'))
nope=kmla-rope; eps=float(val(p+'attention.layer_norm_rms_epsilon')); base=float(val(p+'rope.freq_base'))
T = {t.name: np.array(t.data, dtype=np.float64).reshape([int(x) for x in reversed(t.shape)]) for t in r.tensors}
def rms(x, w): return x/np.sqrt(np.mean(x*x)+eps)*w
def ropenorm(x, pos):  # adjacent pairs
    y=x.copy()
    for i in range(rope//2):
        th = pos*base**(-2*i/rope); c,s=np.cos(th),np.sin(th)
        a,b=x[2*i],x[2*i+1]; y[2*i]=a*c-b*s; y[2*i+1]=a*s+b*c
    return y
ids=[int(t) for t in sys.argv[3].split(',')]
emb=T['token_embd.weight']; out_w=T.get('output.weight', emb)
x=[emb[i].copy() for i in ids]
scale=1/np.sqrt(kmla)
for l in range(L):
    b=f'blk.{l}.'
    cache=[]
    newx=[]
    for pos,xi in enumerate(x):
        h=rms(xi,T[b+'attn_norm.weight'])
        if b+'attn_q.weight' in T: q=T[b+'attn_q.weight']@h
        else: q=T[b+'attn_q_b.weight']@rms(T[b+'attn_q_a.weight']@h, T[b+'attn_q_a_norm.weight'])
        q=q.reshape(heads,kmla)
        kva=T[b+'attn_kv_a_mqa.weight']@h
        c=rms(kva[:kvl],T[b+'attn_kv_a_norm.weight']); kpe=ropenorm(kva[kvl:],pos)
        if absorbed:
            kb=T[b+'attn_k_b.weight']  # [heads, kvl, nope]
            vb=T[b+'attn_v_b.weight']  # [heads, v, kvl]
            knope=np.stack([kb[hh].T@c for hh in range(heads)])  # [heads, nope]
            vv=np.stack([vb[hh]@c for hh in range(heads)])
        else:
            kvb=T[b+'attn_kv_b.weight'].reshape(heads, nope+v, kvl)
            knope=np.stack([kvb[hh,:nope]@c for hh in range(heads)]); vv=np.stack([kvb[hh,nope:]@c for hh in range(heads)])
        cache.append((knope,kpe,vv))
        o=[]
        for hh in range(heads):
            qn=q[hh,:nope]; qp=ropenorm(q[hh,nope:],pos)
            sc=np.array([(qn@k[0][hh] + qp@k[1])*scale for k in cache])
            a=np.exp(sc-sc.max()); a/=a.sum()
            o.append(sum(a[t]*cache[t][2][hh] for t in range(len(cache))))
        att=T[b+'attn_output.weight']@np.concatenate(o)
        x1=xi+att
        h2=rms(x1,T[b+'ffn_norm.weight'])
        g=T[b+'ffn_gate.weight']@h2; u=T[b+'ffn_up.weight']@h2
        x1=x1+T[b+'ffn_down.weight']@(g/(1+np.exp(-g))*u)
        newx.append(x1)
    x=newx
probs=[]
for xi in x:
    lg=out_w@rms(xi,T['output_norm.weight']); e=np.exp(lg-lg.max()); probs.append(e/e.sum())
job={"threads":1,"runs":[{"model":path,"score":{"sequences":[ids],"top":1,"full":True}}]}
with tempfile.NamedTemporaryFile('w', suffix='.json', delete=False) as f:
    json.dump(job, f)
res=json.loads(subprocess.run(['bash', str(ROOT/'tests'/'llama_cpp'/'run.sh'), f.name],capture_output=True,text=True).stdout)
full=np.array([p['full'] for p in res['runs'][0]['scores'][0]])
print(path.split('/')[-1], 'max|p_ref - p_llama|', np.abs(full-np.array(probs)).max())
