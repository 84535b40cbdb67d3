"""The method's pure logic: prompts, propose-and-aggregate layers, proposals, aggregation targets,
training sets and chat templates. Plain data in and out; no torch, vLLM, MLflow or HTTP imports."""
