"""Training one stage of one model, from typed options (the pipeline's stage step unpacks params).

    engine.py        the Trainer: one loop, resumable at any step boundary, data-parallel under torchrun
    train_config.py  its options (TrainConfig) and which of them a resume may change
    validation.py    the per-epoch validation scores the best checkpoint is chosen on
    replay.py        earlier stages' videos mixed into the draws
    device.py        the device (auto / cpu / cuda), its autocast dtype, a batch moved there
    distributed.py   DDP helpers, a world of one process outside torchrun
    losses.py        cross-entropy, weighted cross-entropy, focal loss
    budget.py        the time budget and SIGTERM / SIGINT as a stop request
    checkpoint.py    the checkpoint format (safetensors chunks, sha256 index, atomic)
    retention.py     which checkpoints are kept (best, last N, storage budget)
    export_best.py   the fp16 weights-only export of a finished stage's best checkpoint
    pretext.py       the self-supervised pretext backbone
    throughput.py    measured speed, kept for the plan
"""
