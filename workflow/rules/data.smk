# Data: training queries + UltraFeedback-schema file (+ the miniature's corpus), benchmark files,
# and (miniature) the base model built from the corpus.


def prepare_data_outputs():
    out = {
        "queries": "results/prepare_data/queries.jsonl",
        "ultrafeedback": "results/prepare_data/ultrafeedback.jsonl",
    }
    if CFG.data.kind == "miniature":
        out["corpus"] = "results/prepare_data/corpus.txt"
    return out


rule prepare_data:
    output:
        **prepare_data_outputs(),
        metrics="results/prepare_data/metrics.json",
    log:
        "logs/prepare_data/prepare_data.log",
    benchmark:
        "results/benchmarks/prepare_data/prepare_data.tsv",
    params:
        cfg=section(data=CFG.data),
    shell:
        "python -m aft.stages.prepare_data --config {params.cfg:q} --out results/prepare_data"
        " --metrics {output.metrics} > {log} 2>&1"


rule prepare_bench:
    output:
        bench="results/prepare_bench/{bench}.jsonl",
        metrics="results/prepare_bench/{bench}.metrics.json",
    log:
        "logs/prepare_bench/{bench}.log",
    benchmark:
        "results/benchmarks/prepare_bench/{bench}.tsv",
    params:
        cfg=section(data=CFG.data),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.prepare_bench --config {params.cfg:q} --bench {wildcards.bench}"
        " --out {output.bench} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_base:
    input:
        corpus="results/prepare_data/corpus.txt",
    output:
        model=directory("results/build_base/{base}/model"),
        metrics="results/build_base/{base}/metrics.json",
    log:
        "logs/build_base/{base}.log",
    benchmark:
        "results/benchmarks/build_base/{base}.tsv",
    params:
        cfg=lambda w: section(base=CFG.bases[w.base]),
        wc=wildcard_tags,
    threads: workflow.cores
    shell:
        "OMP_NUM_THREADS={threads} python -m aft.stages.build_base --config {params.cfg:q} --corpus {input.corpus}"
        " --out {output.model} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
