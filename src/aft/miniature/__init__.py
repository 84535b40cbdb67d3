"""The CPU miniature: its synthetic world, its tiny base model, and the aggregation-trace analysis.
Only the stages and configs that select the miniature import this package."""
