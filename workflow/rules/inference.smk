# Inference: direct answers, or propose-and-aggregate with the official semantics (vLLM). The model is
# the trained one, or a checkpoint named in the config's `checkpoints` (then nothing is trained).


rule generate_answers:
    input:
        model=answer_model_input,
        bench="results/prepare_bench/{bench}.jsonl",
        template=CFG.inference.template_file,
    output:
        answers="results/generate_answers/{base}/{variant}/{mode}/{bench}.jsonl",
        metrics="results/generate_answers/{base}/{variant}/{mode}/{bench}.metrics.json",
    log:
        "logs/generate_answers/{base}/{variant}/{mode}/{bench}.log",
    benchmark:
        "results/timings/generate_answers/{base}/{variant}/{mode}/{bench}.tsv"
    threads: threads_of("generate_answers")
    resources:
        **resources_of("generate_answers", gpus=gpus(CFG.inference.engine)),
    params:
        cfg=section(inference=CFG.inference),
        model=answer_model,
        revision=answer_revision,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.generate_answers --config {params.cfg:q} --mode {wildcards.mode}"
        " --model {params.model} {params.revision} --bench {input.bench} --bench-name {wildcards.bench}"
        " --out {output.answers} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
