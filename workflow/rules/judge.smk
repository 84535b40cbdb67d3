# Judging: exact match (miniature); AlpacaEval 2 (alpaca-eval, LC and raw win rate) and MT-Bench
# (FastChat single-answer grading) through an OpenAI-compatible judge endpoint (judge.endpoint).


rule judge_answers:
    input:
        answers="results/generate_answers/{base}/{variant}/{mode}/{bench}.jsonl",
        bench="results/prepare_bench/{bench}.jsonl",
        reference=lambda w: judge_files("reference", w.bench),
        judge_prompts=lambda w: judge_files("judge_prompts", w.bench),
        lc_fit=lambda w: judge_files("lc_fit", w.bench),
    output:
        result="results/judge_answers/{base}/{variant}/{mode}/{bench}.json",
        judgments="results/judge_answers/{base}/{variant}/{mode}/{bench}.judgments.jsonl",
        metrics="results/judge_answers/{base}/{variant}/{mode}/{bench}.metrics.json",
    log:
        "logs/judge_answers/{base}/{variant}/{mode}/{bench}.log",
    benchmark:
        "results/timings/judge_answers/{base}/{variant}/{mode}/{bench}.tsv"
    # an API judge is reached from where the workflow runs (compute nodes often have no internet)
    localrule: CFG.judge.endpoint is not None
    threads: threads_of("judge_answers")
    resources:
        **resources_of("judge_answers"),
        # requests this job keeps in flight: `--resources judge_requests=N` caps them across parallel jobs
        judge_requests=lambda w: judge_requests(w.bench),
    params:
        cfg=section(judge=CFG.judge),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.judge_answers --config {params.cfg:q} --bench-name {wildcards.bench}"
        " --answers {input.answers} --bench {input.bench} --reference {input.reference}"
        " --judge-prompts {input.judge_prompts} --lc-fit {input.lc_fit} --out {output.result}"
        " --judgments {output.judgments}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
