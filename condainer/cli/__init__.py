"""The command line: the `cnd` program, its click commands and the reports it prints."""
