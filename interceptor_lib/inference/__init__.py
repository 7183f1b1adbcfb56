"""Score videos and images with a trained ensemble, file by file in reading order:

    inputs.py      which files: the paths given (folders searched), or a sample of a run's test videos
    preprocess.py  the preprocessing settings the run trained with, and one input's face crops
    score.py       one prepared input's member scores and ensemble P(fake)
    explain.py     one input's Grad-CAM figure
    predict.py     `predict_paths`: all of the above over every input (the `predict` command)
    format.py      the results as a text table, a data frame, and `reports/inference.csv`
"""
