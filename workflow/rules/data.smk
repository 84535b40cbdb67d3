# Data: source files (paper: downloaded once, checked against their sha256), training queries +
# UltraFeedback-schema file (+ the miniature's corpus), benchmark files, and (miniature) the base
# model built from the corpus.


# downloads run where the workflow runs (login nodes have internet; compute nodes often do not)
localrules:
    download_source,
    fetch_model,


rule download_source:
    output:
        file="results/download_source/{source}/{file}",
        metrics="results/download_source/{source}/{file}.metrics.json",
    log:
        "logs/download_source/{source}/{file}.log",
    benchmark:
        "results/timings/download_source/{source}/{file}.tsv"
    wildcard_constraints:
        source="|".join(SOURCES) or "no-source",
        file="|".join(re.escape(f.name) for s in SOURCES.values() for f in s.files)
        or "no-file",
    params:
        cfg=lambda w: GRAPH.source_identity(w.source, w.file),
        # a function of `output` is a derived param, which Snakemake's params trigger ignores:
        # reading the same bytes from a mirror instead of the hub reruns nothing
        local=lambda w, output: source_location(w.source, w.file),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.download_source --config {params.cfg:q} --source {wildcards.source}"
        " --file {wildcards.file} {params.local} --out {output.file}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


# one hub model at a revision (a base, the teacher, a reward model, a released checkpoint), fetched once
# through the Hugging Face cache; every job that loads it reads this folder with the hub off
rule fetch_model:
    output:
        model=directory("results/fetch_model/{repo}/{revision}/model"),
        metrics="results/fetch_model/{repo}/{revision}/metrics.json",
    log:
        "logs/fetch_model/{repo}/{revision}.log",
    benchmark:
        "results/timings/fetch_model/{repo}/{revision}.tsv"
    wildcard_constraints:
        repo="|".join(re.escape(w["repo"]) for _, w in GRAPH.fetch_jobs()) or "no-repo",
        revision="|".join(re.escape(w["revision"]) for _, w in GRAPH.fetch_jobs())
        or "no-revision",
    params:
        cfg=lambda w: GRAPH.settings("fetch_model", repo=w.repo, revision=w.revision),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.fetch_model --config {params.cfg:q} --out {output.model}"
        " --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule convert_checkpoint:
    input:
        gguf=lambda w: source_files(f"checkpoint_{w.base}_{w.variant}"),
    output:
        model=directory("results/convert_checkpoint/{base}/{variant}/{key}/model"),
        metrics="results/convert_checkpoint/{base}/{variant}/{key}/metrics.json",
    log:
        "logs/convert_checkpoint/{base}/{variant}/{key}.log",
    benchmark:
        "results/timings/convert_checkpoint/{base}/{variant}/{key}.tsv"
    threads: threads_of("convert_checkpoint")
    resources:
        **resources_of("convert_checkpoint"),
    params:
        cfg=settings_of("convert_checkpoint"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.convert_checkpoint --config {params.cfg:q} --gguf {input.gguf}"
        " --out {output.model} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"


rule prepare_data:
    input:
        ultrafeedback=source_files("ultrafeedback") if CFG.data.kind == "paper" else [],
    output:
        **prepare_data_outputs(),
        metrics="results/prepare_data/{key}/metrics.json",
    log:
        "logs/prepare_data/{key}.log",
    benchmark:
        "results/timings/prepare_data/{key}.tsv"
    threads: threads_of("prepare_data")
    resources:
        **resources_of("prepare_data"),
    params:
        cfg=settings_of("prepare_data"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.prepare_data --config {params.cfg:q} --ultrafeedback {input.ultrafeedback}"
        " --out results/prepare_data/{wildcards.key} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"


rule prepare_bench:
    input:
        source=lambda w: bench_files(w.bench),
        prompt=lambda w: bench_prompt(w.bench),
    output:
        bench="results/prepare_bench/{bench}/{key}/bench.jsonl",
        metrics="results/prepare_bench/{bench}/{key}/metrics.json",
    log:
        "logs/prepare_bench/{bench}/{key}.log",
    benchmark:
        "results/timings/prepare_bench/{bench}/{key}.tsv"
    threads: threads_of("prepare_bench")
    resources:
        **resources_of("prepare_bench"),
    params:
        cfg=settings_of("prepare_bench"),
        wc=wildcard_tags,
    shell:
        "python -m aft.stages.prepare_bench --config {params.cfg:q} --bench {wildcards.bench}"
        " --source {input.source} --out {output.bench} --metrics {output.metrics}"
        " --wildcards {params.wc} > {log} 2>&1"


rule build_base:
    input:
        corpus=data_file("corpus.txt"),
    output:
        model=directory("results/build_base/{base}/{key}/model"),
        metrics="results/build_base/{base}/{key}/metrics.json",
    log:
        "logs/build_base/{base}/{key}.log",
    benchmark:
        "results/timings/build_base/{base}/{key}.tsv"
    threads: threads_of("build_base")
    resources:
        **resources_of("build_base"),
    params:
        cfg=settings_of("build_base"),
        wc=wildcard_tags,
    shell:
        "OMP_NUM_THREADS={threads} python -m aft.stages.build_base --config {params.cfg:q} --corpus {input.corpus}"
        " --out {output.model} --metrics {output.metrics} --wildcards {params.wc} > {log} 2>&1"
