"""Building an environment into the staging directory, and the project's image from it (`cnd init`, `cnd build`, `cnd lock`)."""
