# The paper's §6.1 analysis: the aggregation targets' per-token loss under the base and each model
# trained here, given the query alone and given the query with its proposals (config `target_loss`).


rule measure_target_loss:
    input:
        proposals=lambda w: proposals_file("off"),
        targets=lambda w: f"{job_dir('build_targets', pset='off')}/targets.jsonl",
        template=CFG.dataset.template_file,
        base=base_model_input,
        models=lambda w: [
            f"{job_dir('train_model', base=w.base, variant=v, seed=str(GRID.seeds[0]))}/model"
            for v in GRAPH.trained_variants(w.base)
        ],
    output:
        losses="results/measure_target_loss/{base}/{key}/losses.json",
        metrics="results/measure_target_loss/{base}/{key}/metrics.json",
    log:
        "logs/measure_target_loss/{base}/{key}.log",
    benchmark:
        "results/timings/measure_target_loss/{base}/{key}.tsv"
    threads: threads_of("measure_target_loss")
    resources:
        **resources_of("measure_target_loss", gpus=1 if CFG.train.num_gpus else 0),
    params:
        cfg=settings_of("measure_target_loss"),
        base=lambda w: base_model(w.base),
        models=lambda w: " ".join(
            f"{v}={job_dir('train_model', base=w.base, variant=v, seed=str(GRID.seeds[0]))}/model"
            for v in GRAPH.trained_variants(w.base)
        ),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.measure_target_loss --config {params.cfg:q} --base {wildcards.base}"
        " --base-model {params.base}"
        " --models {params.models} --proposals {input.proposals} --targets {input.targets}"
        " --template {input.template}"
        " --out {output.losses} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
