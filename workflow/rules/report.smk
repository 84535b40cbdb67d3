# The report of this experiment (config `experiment`): the paper-shaped table with every score's interval,
# the claims table, the plot, provenance, costs and the artifact lineage, in reports/<experiment>/ (also
# part of `snakemake --report`). Experiments' reports sit side by side: python -m aft.tools.compare.


rule make_report:
    input:
        results=JUDGED,
        judgments=[
            f"{job_dir('judge_answers', **w)}/judgments.jsonl" for w in JUDGED_JOBS
        ],
        answers=[
            f"{job_dir('generate_answers', **w)}/answers.jsonl" for w in JUDGED_JOBS
        ],
        jobs=[GRAPH.metrics_file(*job) for job in EXPERIMENT_JOBS],
        target_loss=[
            f"{job_dir(rule, **w)}/losses.json" for rule, w in TARGET_LOSS_JOBS
        ],
        reward_heldout=list(REWARD_HELDOUT.values()),
    output:
        table="reports/{experiment}/results.md",
        html=report(
            "reports/{experiment}/results.html",
            category="Results",
            subcategory="{experiment}",
            caption="../report/table.rst",
            labels={"experiment": "{experiment}", "content": "tables"},
        ),
        plot=report(
            "reports/{experiment}/results.png",
            category="Results",
            subcategory="{experiment}",
            caption="../report/plot.rst",
            labels={"experiment": "{experiment}", "content": "scores plot"},
        ),
        curves=report(
            "reports/{experiment}/loss_curves.png",
            category="Results",
            subcategory="{experiment}",
            caption="../report/curves.rst",
            labels={"experiment": "{experiment}", "content": "loss curves"},
        ),
        scaling=report(
            "reports/{experiment}/scaling.png",
            category="Results",
            subcategory="{experiment}",
            caption="../report/scaling.rst",
            labels={"experiment": "{experiment}", "content": "scaling curves"},
        ),
        target_loss_plot=report(
            "reports/{experiment}/target_loss.png",
            category="Results",
            subcategory="{experiment}",
            caption="../report/target_loss.rst",
            labels={"experiment": "{experiment}", "content": "target loss"},
        ),
        json="reports/{experiment}/results.json",
        artifacts="reports/{experiment}/artifacts.json",
        metrics="results/make_report/{experiment}/metrics.json",
    log:
        "logs/make_report/{experiment}.log",
    benchmark:
        "results/timings/make_report/{experiment}.tsv"
    threads: threads_of("make_report")
    resources:
        **resources_of("make_report"),
    params:
        cfg=section(report=CFG.report, strategies=CFG.strategy_shapes()),
        experiment=json.dumps(experiment_info()),
        reward_heldout=" ".join(f"{n}={f}" for n, f in REWARD_HELDOUT.items()),
        reward_hub=" ".join(shlex.quote(f"{n}={m}") for n, m in REWARD_HUB.items()),
    shell:
        "python -m aft.stages.make_report --config {params.cfg:q} --experiment {params.experiment:q}"
        " --results {input.results} --judgments {input.judgments} --answers {input.answers}"
        " --jobs {input.jobs} --table {output.table} --html {output.html} --plot {output.plot} --curves {output.curves}"
        " --scaling {output.scaling} --target-loss {input.target_loss}"
        " --target-loss-plot {output.target_loss_plot}"
        " --reward-heldout {params.reward_heldout} --reward-hub {params.reward_hub}"
        " --json {output.json}"
        " --artifacts {output.artifacts} --metrics {output.metrics} > {log} 2>&1"
