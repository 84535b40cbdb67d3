# Inference: direct answers, propose-and-aggregate with the official semantics, or a named strategy
# (majority vote, best-of-N with a reward model) through vLLM. The model is the trained one, or a
# checkpoint named in the config's `checkpoints` (then nothing is trained).


rule generate_answers:
    input:
        model=answer_model_input,
        bench=lambda w: bench_file(w.bench),
        template=CFG.inference.template_file,
        reward_model=answer_reward_input,
    output:
        answers="results/generate_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}/answers.jsonl",
        metrics="results/generate_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}/metrics.json",
    log:
        "logs/generate_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}.log",
    benchmark:
        "results/timings/generate_answers/{base}/{variant}/seed{seed}/{mode}/{bench}/{key}.tsv"
    threads: threads_of("generate_answers")
    resources:
        **resources_of("generate_answers", gpus=gpus(CFG.inference.engine)),
    params:
        cfg=settings_of("generate_answers"),
        model=answer_model,
        reward_model=answer_reward_arg,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.generate_answers --config {params.cfg:q} --mode {wildcards.mode}"
        " --model {params.model} --bench {input.bench} --bench-name {wildcards.bench}"
        " --out {output.answers} {params.reward_model} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"
