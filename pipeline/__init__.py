"""Running videos: one video's stages wired by bounded queues in threads (`runner`, `stages`),
the command line (`cli`), folder runs with resume and shards (`folder`, `resume`, `progress`),
and folder runs on a Ray cluster (`cluster`). What a run writes is `reports/`; what the stages
do is `workers/`."""
