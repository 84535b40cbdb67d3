"""Evaluation: benchmark rows, scorers and LLM judges (AlpacaEval 2, MT-Bench), and the report."""
