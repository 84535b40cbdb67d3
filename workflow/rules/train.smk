# Training sets (SFT: direct examples; AFT: aggregation + direct examples) and fine-tuning.


rule build_dataset:
    input:
        proposals=lambda w: proposals_file(pset_of(w.variant, w.base)),
        targets=lambda w: f"{job_dir('build_targets', pset=pset_of(w.variant, w.base))}/targets.jsonl",
        template=CFG.dataset.template_file,
        model=base_model_input,
    output:
        data="results/build_dataset/{base}/{variant}/{key}/train.jsonl",
        metrics="results/build_dataset/{base}/{variant}/{key}/metrics.json",
    log:
        "logs/build_dataset/{base}/{variant}/{key}.log",
    benchmark:
        "results/timings/build_dataset/{base}/{variant}/{key}.tsv"
    threads: threads_of("build_dataset")
    resources:
        **resources_of("build_dataset"),
    params:
        cfg=settings_of("build_dataset"),
        model=lambda w: base_model(w.base),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.build_dataset --config {params.cfg:q} --variant {wildcards.variant}"
        " --proposals {input.proposals} --targets {input.targets} --tokenizer {params.model}"
        " --out {output.data} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule train_model:
    input:
        data=lambda w: f"{job_dir('build_dataset', base=w.base, variant=w.variant)}/train.jsonl",
        model=base_model_input,
    output:
        model=directory("results/train_model/{base}/{variant}/seed{seed}/{key}/model"),
        metrics="results/train_model/{base}/{variant}/seed{seed}/{key}/metrics.json",
    log:
        "logs/train_model/{base}/{variant}/seed{seed}/{key}.log",
    benchmark:
        "results/timings/train_model/{base}/{variant}/seed{seed}/{key}.tsv"
    threads: threads_of("train_model")
    resources:
        **resources_of(
            "train_model", gpus=CFG.train.num_gpus, nodes=CFG.train.num_nodes
        ),
    params:
        cfg=settings_of("train_model"),
        model=lambda w: base_model(w.base),
        launch=train_launcher(CFG.train),
        wc=wildcard_tags,
    shell:
        "OMP_NUM_THREADS={threads} {params.launch} -m aft.stages.train_model --config {params.cfg:q} --data {input.data}"
        " --base-model {params.model} --out {output.model} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"


# Best-of-N's reward model, when the config trains one (reward_models.<rm>.source: train): TRL's
# RewardTrainer on the UltraFeedback-schema ratings, and its accuracy on held-out queries' pairs.
rule train_reward_model:
    input:
        ultrafeedback=lambda w: data_file("ultrafeedback.jsonl"),
        model=lambda w: base_folder(CFG.reward_models[w.rm].train.base),
    output:
        model=directory("results/train_reward_model/{rm}/{key}/model"),
        heldout="results/train_reward_model/{rm}/{key}/heldout.jsonl",
        metrics="results/train_reward_model/{rm}/{key}/metrics.json",
    log:
        "logs/train_reward_model/{rm}/{key}.log",
    benchmark:
        "results/timings/train_reward_model/{rm}/{key}.tsv"
    threads: threads_of("train_reward_model")
    resources:
        **resources_of("train_reward_model", gpus=1 if CFG.train.num_gpus else 0),
    params:
        cfg=settings_of("train_reward_model"),
        model=lambda w: base_model(CFG.reward_models[w.rm].train.base),
        wc=wildcard_tags,
    shell:
        "OMP_NUM_THREADS={threads} python -m aft.stages.train_reward_model --config {params.cfg:q}"
        " --ultrafeedback {input.ultrafeedback} --base-model {params.model} --out {output.model}"
        " --heldout {output.heldout} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
