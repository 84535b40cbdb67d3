"""Generation: the engines (vLLM in process, OpenAI-compatible endpoints), the judge endpoint client,
and the fingerprinted shards that make long generation jobs resumable."""
