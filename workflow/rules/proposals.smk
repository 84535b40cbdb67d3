# Proposals (off-policy from UltraFeedback, on-policy sampled from the base) and aggregation targets.
# The generating stages work in shards (<output>.shards/) and resume after a killed job.


rule build_proposals_off:
    input:
        ultrafeedback="results/prepare_data/ultrafeedback.jsonl",
    output:
        proposals="results/build_proposals_off/proposals.jsonl",
        metrics="results/build_proposals_off/metrics.json",
    log:
        "logs/build_proposals_off/build_proposals_off.log",
    benchmark:
        "results/benchmarks/build_proposals_off/build_proposals_off.tsv",
    params:
        cfg=section(proposals=CFG.proposals),
    threads: threads_of("build_proposals_off")
    resources:
        **resources_of("build_proposals_off"),
    shell:
        "python -m aft.stages.build_proposals_off --config {params.cfg:q}"
        " --ultrafeedback {input.ultrafeedback} --out {output.proposals}"
        " --metrics {output.metrics} > {log} 2>&1"


rule build_proposals_on:
    input:
        queries="results/prepare_data/queries.jsonl",
        icl_prompt=CFG.on_policy.icl_prompt_file,
        model=base_model_input,
    output:
        proposals="results/build_proposals_on/{base}/proposals.jsonl",
        metrics="results/build_proposals_on/{base}/metrics.json",
    log:
        "logs/build_proposals_on/{base}.log",
    benchmark:
        "results/benchmarks/build_proposals_on/{base}.tsv",
    params:
        cfg=lambda w: section(proposals=CFG.proposals, on_policy=CFG.on_policy, base=CFG.bases[w.base]),
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    threads: threads_of("build_proposals_on")
    resources:
        **resources_of("build_proposals_on", gpus=gpus(CFG.on_policy.engine)),
    shell:
        "python -m aft.stages.build_proposals_on --config {params.cfg:q} --queries {input.queries}"
        " --base-model {params.model} --out {output.proposals} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"


rule build_targets:
    input:
        proposals=lambda w: proposals_file(w.pset),
        queries="results/prepare_data/queries.jsonl",
        template=CFG.targets.template_file,
    output:
        targets="results/build_targets/{pset}/targets.jsonl",
        metrics="results/build_targets/{pset}/metrics.json",
    log:
        "logs/build_targets/{pset}.log",
    benchmark:
        "results/benchmarks/build_targets/{pset}.tsv",
    params:
        cfg=section(targets=CFG.targets),
        wc=wildcard_tags,
    threads: threads_of("build_targets")
    resources:
        **resources_of("build_targets", gpus=gpus(CFG.targets.engine) if TEACHER_IN_PROCESS else 0),
    shell:
        "python -m aft.stages.build_targets --config {params.cfg:q} --proposals {input.proposals}"
        " --queries {input.queries} --out {output.targets} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"
