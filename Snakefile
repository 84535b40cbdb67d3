# AFT (arXiv 2501.11877) end to end. Default config: the CPU miniature; config/paper.yaml: the paper.
#   snakemake --cores 2                                  # the miniature
#   snakemake -n --configfile config/paper.yaml          # the paper grid, dry run
from snakemake.utils import min_version

min_version("9.0")


# The default config unless config files are named: `--configfile config/paper.yaml` is the whole
# config, not an overlay on the miniature. Stack overlays explicitly after their base:
#   snakemake --configfile config/config.yaml config/experiments/<overlay>.yaml
# Every config file is read again strictly first (aft.pipeline.configfile): a YAML mistake in the
# default config is named with its file and line, and a key given twice in one file is refused.
from aft.pipeline.configfile import ConfigFileError, read_config_files

try:
    read_config_files(workflow.overwrite_configfiles or ["config/config.yaml"])
except ConfigFileError as err:
    raise WorkflowError(str(err)) from None
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# `snakemake --lint` asks each rule for a conda environment or container. Every rule runs in the one
# Python environment installed from a lock (requirements/cpu.lock; on a cluster requirements/cuda.lock,
# docs/cluster.md): its libraries are verified together. tests/unit/test_workflow_style.py allows that
# lint and no other.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/tracking.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/proposals.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/inference.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT,
        SOURCE_FILES,  # every configured source is fetched and checked, also those only judges read
