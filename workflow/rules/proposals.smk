# Proposals (off-policy from UltraFeedback, on-policy sampled from the base) and aggregation targets.
# The generating stages work in shards (<output>.shards/) and resume after a killed job. With
# num_jobs > 1 (on_policy, targets) the shards are made by num_jobs `<rule>_part` jobs (shard i by job
# i % num_jobs, all into the same <output>.shards/), and the stage's own rule only gathers them, on CPU.
# Their metrics are temp(): the gather removes the shards, so a gather that must run again brings its
# part jobs back. The gathered output is the same for every num_jobs, but num_jobs is in the params and
# sets the part jobs, so changing it after the stage finished reruns the stage (see README).


rule build_proposals_off:
    input:
        ultrafeedback="results/prepare_data/ultrafeedback.jsonl",
    output:
        proposals="results/build_proposals_off/proposals.jsonl",
        metrics="results/build_proposals_off/metrics.json",
    log:
        "logs/build_proposals_off/build_proposals_off.log",
    benchmark:
        "results/benchmarks/build_proposals_off/build_proposals_off.tsv"
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
        metrics=temp("results/build_proposals_on_part/{base}/{job}/metrics.json"),
    log:
        "logs/build_proposals_on_part/{base}/{job}.log",
    benchmark:
        "results/benchmarks/build_proposals_on_part/{base}/{job}.tsv"
    threads: threads_of("build_proposals_on_part")
    resources:
        **resources_of("build_proposals_on_part", gpus=gpus(CFG.on_policy.engine)),
    params:
        cfg=on_policy_cfg,
        model=lambda w: base_model(w.base),
        out=lambda w: proposals_file(f"on_{w.base}"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --out {params.out} --job {wildcards.job}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule build_proposals_on:
    input:
        queries="results/prepare_data/queries.jsonl",
        icl_prompt=CFG.on_policy.icl_prompt_file,
        model=base_model_input,
        parts=lambda w: part_files("build_proposals_on", w.base, ON_POLICY_JOBS),
    output:
        proposals="results/build_proposals_on/{base}/proposals.jsonl",
        metrics="results/build_proposals_on/{base}/metrics.json",
    log:
        "logs/build_proposals_on/{base}.log",
    benchmark:
        "results/benchmarks/build_proposals_on/{base}.tsv"
    threads: threads_of("build_proposals_on")
    resources:
        **resources_of(
            "build_proposals_on",
            gpus=0 if ON_POLICY_JOBS > 1 else gpus(CFG.on_policy.engine),
        ),
    params:
        cfg=on_policy_cfg,
        model=lambda w: base_model(w.base),
        parts=parts_option,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --out {output.proposals} --metrics {output.metrics} {params.parts}"
        " --wildcards {params.wc} > {log} 2>&1"


rule build_targets_part:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries="results/prepare_data/queries.jsonl",
        template=CFG.targets.template_file,
    output:
        metrics=temp("results/build_targets_part/{pset}/{job}/metrics.json"),
    log:
        "logs/build_targets_part/{pset}/{job}.log",
    benchmark:
        "results/benchmarks/build_targets_part/{pset}/{job}.tsv"
    threads: threads_of("build_targets_part")
    resources:
        **resources_of(
            "build_targets_part",
            gpus=gpus(CFG.targets.engine) if TEACHER_IN_PROCESS else 0,
        ),
    params:
        cfg=section(targets=CFG.targets),
        out="results/build_targets/{pset}/targets.jsonl",
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --out {params.out} --job {wildcards.job} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"


rule build_targets:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries="results/prepare_data/queries.jsonl",
        template=CFG.targets.template_file,
        parts=lambda w: part_files("build_targets", w.pset, TARGET_JOBS),
    output:
        targets="results/build_targets/{pset}/targets.jsonl",
        metrics="results/build_targets/{pset}/metrics.json",
    log:
        "logs/build_targets/{pset}.log",
    benchmark:
        "results/benchmarks/build_targets/{pset}.tsv"
    threads: threads_of("build_targets")
    resources:
        **resources_of(
            "build_targets",
            gpus=(
                gpus(CFG.targets.engine)
                if TEACHER_IN_PROCESS and TARGET_JOBS == 1
                else 0
            ),
        ),
    params:
        cfg=section(targets=CFG.targets),
        parts=parts_option,
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --out {output.targets} --metrics {output.metrics} {params.parts}"
        " --wildcards {params.wc} > {log} 2>&1"
