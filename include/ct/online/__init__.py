"""Online validation: a staged challenger judged on live traffic and late labels before promotion."""
