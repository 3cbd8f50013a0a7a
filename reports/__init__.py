"""What users read: the JSON report and its schema, the CSVs, the plot, the review pages, a folder
run's summary (and the merge of a sharded run's), the result types a run hands over, and the
names of the files a run leaves. Imports `config/` and `workers/`, never `pipeline/`."""
