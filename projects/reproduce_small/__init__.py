"""The paper's matched-data comparison, reproduced small on a CPU (see REPORT.md and run.py).

  config.py    what the study runs: data, variants, seeds, head training, the export check
  data.py      every data source encoded once into groups of distinct sequences + index sets
  features.py  the frozen backbone's last-token features, cached and resumable
  probe.py     linear reward heads trained on the cached features with the library's losses
  run.py       the stages (features, train, export, report) and the command line
  report.py    REPORT.md and its figures from results/, prose in report_template.md + verdict.md
"""
