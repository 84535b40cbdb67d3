# Judging: exact match (miniature); the paper benchmarks' LLM judges are open work (README).


rule judge_answers:
    input:
        answers="results/generate_answers/{base}/{variant}/{mode}/{bench}.jsonl",
        bench="results/prepare_bench/{bench}.jsonl",
    output:
        result="results/judge_answers/{base}/{variant}/{mode}/{bench}.json",
        metrics="results/judge_answers/{base}/{variant}/{mode}/{bench}.metrics.json",
    log:
        "logs/judge_answers/{base}/{variant}/{mode}/{bench}.log",
    benchmark:
        "results/benchmarks/judge_answers/{base}/{variant}/{mode}/{bench}.tsv",
    params:
        cfg=section(judge=CFG.judge),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.judge_answers --config {params.cfg:q} --bench-name {wildcards.bench}"
        " --answers {input.answers} --bench {input.bench} --out {output.result}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
