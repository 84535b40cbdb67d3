# Inference: direct answers, propose-and-aggregate with the official semantics, or a named strategy
# (majority vote, best-of-N with a reward model) through vLLM. The model is the trained one, or a
# checkpoint named in the config's `checkpoints` (then nothing is trained). With inference.num_jobs > 1
# an answer set's shards are spread over that many GPU jobs (generate_answers_part), then gathered.

ANSWERS = "{base}/{variant}/seed{seed}/{mode}/{bench}"
ANSWER_PARTS = bool(GRAPH.answer_part_items())


rule generate_answers_part:
    input:
        model=answer_model_input,
        bench=lambda w: bench_file(w.bench),
        template=CFG.inference.template_file,
        reward_model=answer_reward_input,
    output:
        part=f"results/generate_answers_part/{ANSWERS}/{{scatteritem}}/{{key}}/part.json",
        metrics=f"results/generate_answers_part/{ANSWERS}/{{scatteritem}}/{{key}}/metrics.json",
    log:
        f"logs/generate_answers_part/{ANSWERS}/{{scatteritem}}/{{key}}.log",
    benchmark:
        f"results/timings/generate_answers_part/{ANSWERS}/{{scatteritem}}/{{key}}.tsv"
    threads: threads_of("generate_answers_part")
    resources:
        **resources_of("generate_answers_part", gpus=gpus(CFG.inference.engine)),
    params:
        cfg=settings_of("generate_answers_part"),
        model=answer_model,
        reward_model=answer_reward_arg,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.generate_answers --config {params.cfg:q} --mode {wildcards.mode}"
        " --model {params.model} --bench {input.bench} --bench-name {wildcards.bench}"
        " {params.reward_model} --part {wildcards.scatteritem} --out {output.part}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


# one job answers (and, for best-of-N, scores) every shard; or, with parts, a CPU job gathers them
rule generate_answers:
    input:
        model=answer_model_input,
        bench=lambda w: bench_file(w.bench),
        template=CFG.inference.template_file,
        reward_model=answer_reward_input,
        parts=answer_parts,
    output:
        answers=f"results/generate_answers/{ANSWERS}/{{key}}/answers.jsonl",
        metrics=f"results/generate_answers/{ANSWERS}/{{key}}/metrics.json",
    log:
        f"logs/generate_answers/{ANSWERS}/{{key}}.log",
    benchmark:
        f"results/timings/generate_answers/{ANSWERS}/{{key}}.tsv"
    threads: threads_of("generate_answers")
    resources:
        **resources_of(
            "generate_answers",
            gpus=0 if ANSWER_PARTS else gpus(CFG.inference.engine),
        ),
    params:
        cfg=settings_of("generate_answers"),
        model=answer_model,
        reward_model=answer_reward_arg,
        parts=lambda w, input: f"--parts {input.parts}" if input.parts else "",
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.generate_answers --config {params.cfg:q} --mode {wildcards.mode}"
        " --model {params.model} --bench {input.bench} --bench-name {wildcards.bench}"
        " --out {output.answers} {params.reward_model} {params.parts} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"
