"""Local stacks of real services shared by tests/ and bench/ (neither imports the other)."""
