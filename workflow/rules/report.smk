# The report: the paper-shaped table and plot, also part of `snakemake --report`.


rule make_report:
    input:
        results=JUDGED,
        judgments=[f.removesuffix(".json") + ".judgments.jsonl" for f in JUDGED],
    output:
        table=report(
            "reports/results.md", category="Results", caption="../report/table.rst"
        ),
        plot=report(
            "reports/results.png", category="Results", caption="../report/plot.rst"
        ),
        json="reports/results.json",
        metrics="results/make_report/metrics.json",
    log:
        "logs/make_report/make_report.log",
    benchmark:
        "results/timings/make_report/make_report.tsv"
    threads: threads_of("make_report")
    resources:
        **resources_of("make_report"),
    params:
        cfg=section(report=CFG.report),
    shell:
        "python -m aft.stages.make_report --config {params.cfg:q} --results {input.results}"
        " --judgments {input.judgments}"
        " --table {output.table} --plot {output.plot} --json {output.json}"
        " --metrics {output.metrics} > {log} 2>&1"
