"""The pipeline steps the notebooks and the CLI call: prepare the data, train the stages, evaluate,
check for bias, report, plan. Only these steps and the CLI import across the layers below."""
