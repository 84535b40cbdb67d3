"""One CLI module per pipeline stage; each rule in workflow/rules runs `python -m aft.stages.<rule>`."""
