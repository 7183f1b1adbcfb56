"""Export a detector or the ensemble to TorchScript and ONNX, file by file in reading order:

    errors.py     what goes wrong in an export (each error names the model and the format)
    signature.py  the batch keys a model reads and the outputs it returns, as the graph's positional
                  inputs and outputs (`ExportWrapper`), and random batches of that signature
    runtime.py    `ExportedModel`: an exported file run from a batch dict, without the original module
    export.py     `export_torchscript`, `export_onnx`, `check_parity`, `compare_speed`, `export_model`
"""
