# Proposals (off-policy from UltraFeedback, on-policy sampled from the base) and aggregation targets.
# The generating stages are Snakemake scatter/gather pairs (`scattergather:` in common.smk, counts from
# on_policy.num_jobs and targets.num_jobs, or `--set-scatter build_targets=N`): each `<rule>_part` job
# makes its share of the shards (shard i by part i % N) in its own folder, resumes after a kill from
# the shards it finished, and writes them to its declared part file; the stage's own rule gathers the
# parts on CPU. The gathered output is the same for every N; changing N reruns the stage.


rule build_proposals_off:
    input:
        ultrafeedback=data_file("ultrafeedback.jsonl"),
    output:
        proposals="results/build_proposals_off/{key}/proposals.jsonl",
        metrics="results/build_proposals_off/{key}/metrics.json",
    log:
        "logs/build_proposals_off/{key}.log",
    benchmark:
        "results/timings/build_proposals_off/{key}.tsv"
    threads: threads_of("build_proposals_off")
    resources:
        **resources_of("build_proposals_off"),
    params:
        cfg=settings_of("build_proposals_off"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_off --config {params.cfg:q}"
        " --ultrafeedback {input.ultrafeedback} --out {output.proposals}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_proposals_on_part:
    input:
        queries=data_file("queries.jsonl"),
        icl_prompt=CFG.on_policy.icl_prompt_file,
        model=base_model_input,
    output:
        part="results/build_proposals_on_part/{base}/{scatteritem}/{key}/part.json",
        metrics="results/build_proposals_on_part/{base}/{scatteritem}/{key}/metrics.json",
    log:
        "logs/build_proposals_on_part/{base}/{scatteritem}/{key}.log",
    benchmark:
        "results/timings/build_proposals_on_part/{base}/{scatteritem}/{key}.tsv"
    threads: threads_of("build_proposals_on_part")
    resources:
        **resources_of("build_proposals_on_part", gpus=gpus(CFG.on_policy.engine)),
    params:
        cfg=settings_of("build_proposals_on_part"),
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --part {wildcards.scatteritem} --out {output.part}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_proposals_on:
    input:
        queries=data_file("queries.jsonl"),
        parts=proposal_parts,
    output:
        proposals="results/build_proposals_on/{base}/{key}/proposals.jsonl",
        metrics="results/build_proposals_on/{base}/{key}/metrics.json",
    log:
        "logs/build_proposals_on/{base}/{key}.log",
    benchmark:
        "results/timings/build_proposals_on/{base}/{key}.tsv"
    threads: threads_of("build_proposals_on")
    resources:
        **resources_of("build_proposals_on"),
    params:
        cfg=settings_of("build_proposals_on"),
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --parts {input.parts} --out {output.proposals}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_targets_part:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries=data_file("queries.jsonl"),
        template=CFG.targets.template_file,
        teacher=teacher_input,
    output:
        part="results/build_targets_part/{pset}/{scatteritem}/{key}/part.json",
        metrics="results/build_targets_part/{pset}/{scatteritem}/{key}/metrics.json",
    log:
        "logs/build_targets_part/{pset}/{scatteritem}/{key}.log",
    benchmark:
        "results/timings/build_targets_part/{pset}/{scatteritem}/{key}.tsv"
    threads: threads_of("build_targets_part")
    resources:
        **resources_of(
            "build_targets_part",
            gpus=gpus(CFG.targets.engine) if TEACHER_IN_PROCESS else 0,
        ),
    params:
        cfg=settings_of("build_targets_part"),
        teacher=teacher_arg,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} {params.teacher} --part {wildcards.scatteritem} --out {output.part}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


# teacher=model gathers the parts; oracle and best_rated need no model and no parts (one CPU job)
rule build_targets:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries=data_file("queries.jsonl"),
        template=CFG.targets.template_file,
        parts=target_parts,
    output:
        targets="results/build_targets/{pset}/{key}/targets.jsonl",
        metrics="results/build_targets/{pset}/{key}/metrics.json",
    log:
        "logs/build_targets/{pset}/{key}.log",
    benchmark:
        "results/timings/build_targets/{pset}/{key}.tsv"
    threads: threads_of("build_targets")
    resources:
        **resources_of("build_targets"),
    params:
        cfg=settings_of("build_targets"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --parts {input.parts} --out {output.targets}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
