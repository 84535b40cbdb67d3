# Proposals (off-policy from UltraFeedback, on-policy sampled from the base) and aggregation targets.
# The generating stages are Snakemake scatter/gather pairs (`scattergather:` in common.smk, counts from
# on_policy.num_jobs and targets.num_jobs, or `--set-scatter build_targets=N`): each `<rule>_part` job
# makes its share of the shards (shard i by part i % N) in its own folder, resumes after a kill from
# the shards it finished, and writes them to its declared part file; the stage's own rule gathers the
# parts on CPU. The gathered output is the same for every N; changing N reruns the stage.


rule build_proposals_off:
    input:
        ultrafeedback="results/prepare_data/ultrafeedback.jsonl",
    output:
        proposals="results/build_proposals_off/proposals.jsonl",
        metrics="results/build_proposals_off/metrics.json",
    log:
        "logs/build_proposals_off/build_proposals_off.log",
    benchmark:
        "results/timings/build_proposals_off/build_proposals_off.tsv"
    threads: threads_of("build_proposals_off")
    resources:
        **resources_of("build_proposals_off"),
    params:
        cfg=section(proposals=CFG.proposals),
    shell:
        "python -m aft.stages.build_proposals_off --config {params.cfg:q}"
        " --ultrafeedback {input.ultrafeedback} --out {output.proposals}"
        " --metrics {output.metrics} > {log} 2>&1"


rule build_proposals_on_part:
    input:
        queries="results/prepare_data/queries.jsonl",
        icl_prompt=CFG.on_policy.icl_prompt_file,
        model=base_model_input,
    output:
        part="results/build_proposals_on_part/{base}/{scatteritem}/part.json",
        metrics="results/build_proposals_on_part/{base}/{scatteritem}/metrics.json",
    log:
        "logs/build_proposals_on_part/{base}/{scatteritem}.log",
    benchmark:
        "results/timings/build_proposals_on_part/{base}/{scatteritem}.tsv"
    threads: threads_of("build_proposals_on_part")
    resources:
        **resources_of("build_proposals_on_part", gpus=gpus(CFG.on_policy.engine)),
    params:
        cfg=on_policy_cfg,
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --part {wildcards.scatteritem} --out {output.part}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_proposals_on:
    input:
        queries="results/prepare_data/queries.jsonl",
        parts=gather.build_proposals_on(
            "results/build_proposals_on_part/{{base}}/{scatteritem}/part.json"
        ),
    output:
        proposals="results/build_proposals_on/{base}/proposals.jsonl",
        metrics="results/build_proposals_on/{base}/metrics.json",
    log:
        "logs/build_proposals_on/{base}.log",
    benchmark:
        "results/timings/build_proposals_on/{base}.tsv"
    threads: threads_of("build_proposals_on")
    resources:
        **resources_of("build_proposals_on"),
    params:
        cfg=on_policy_cfg,
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --parts {input.parts} --out {output.proposals}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_targets_part:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries="results/prepare_data/queries.jsonl",
        template=CFG.targets.template_file,
    output:
        part="results/build_targets_part/{pset}/{scatteritem}/part.json",
        metrics="results/build_targets_part/{pset}/{scatteritem}/metrics.json",
    log:
        "logs/build_targets_part/{pset}/{scatteritem}.log",
    benchmark:
        "results/timings/build_targets_part/{pset}/{scatteritem}.tsv"
    threads: threads_of("build_targets_part")
    resources:
        **resources_of(
            "build_targets_part",
            gpus=gpus(CFG.targets.engine) if TEACHER_IN_PROCESS else 0,
        ),
    params:
        cfg=section(targets=CFG.targets),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --part {wildcards.scatteritem} --out {output.part}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


# teacher=model gathers the parts; oracle and best_rated need no model and no parts (one CPU job)
rule build_targets:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries="results/prepare_data/queries.jsonl",
        template=CFG.targets.template_file,
        parts=target_parts,
    output:
        targets="results/build_targets/{pset}/targets.jsonl",
        metrics="results/build_targets/{pset}/metrics.json",
    log:
        "logs/build_targets/{pset}.log",
    benchmark:
        "results/timings/build_targets/{pset}.tsv"
    threads: threads_of("build_targets")
    resources:
        **resources_of("build_targets"),
    params:
        cfg=section(targets=CFG.targets),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --parts {input.parts} --out {output.targets}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
