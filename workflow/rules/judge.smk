# Judging: exact match (miniature); GSM8K and IFEval by lm-eval's scorers; AlpacaEval 2 (alpaca-eval, LC and raw win rate) and MT-Bench
# (FastChat single-answer grading) through an OpenAI-compatible judge endpoint (judge.endpoint).


rule judge_answers:
    input:
        answers=lambda w: f"{job_dir('generate_answers', **judged_job(w))}/answers.jsonl",
        bench=lambda w: bench_file(w.bench),
        reference=lambda w: judge_files("reference", w.bench),
        judge_prompts=lambda w: judge_files("judge_prompts", w.bench),
        lc_fit=lambda w: judge_files("lc_fit", w.bench),
        punkt_tab=lambda w: judge_files("punkt_tab", w.bench),
    output:
        result="results/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}/result.json",
        judgments="results/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}/judgments.jsonl",
        metrics="results/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}/metrics.json",
    log:
        "logs/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}.log",
    benchmark:
        "results/timings/judge_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}.tsv"
    # an API judge is reached from where the workflow runs (compute nodes often have no internet)
    localrule: CFG.judge.endpoint is not None
    threads: threads_of("judge_answers")
    resources:
        **resources_of("judge_answers"),
        # requests this job keeps in flight: `--resources judge_requests=N` caps them across parallel jobs
        judge_requests=lambda w: judge_requests(w.bench),
    params:
        cfg=settings_of("judge_answers"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.judge_answers --config {params.cfg:q} --bench-name {wildcards.bench}"
        " --answers {input.answers} --bench {input.bench} --reference {input.reference}"
        " --judge-prompts {input.judge_prompts} --lc-fit {input.lc_fit} --punkt-tab {input.punkt_tab}"
        " --out {output.result}"
        " --judgments {output.judgments}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
