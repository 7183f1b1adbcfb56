"""The weighted ensemble of the specialists: one P(fake), its spread over the members, a shared trunk.

    combine.py  `Ensemble` (the nn.Module that combines the members, running a shared frozen trunk
                once), trunk hashing and grouping, `normalise_weights`, COMBINATIONS, `EnsembleError`
    fit.py      weights, temperature and threshold fitted on validation (`fit_ensemble`,
                `fit_weights`, `choose_threshold`), `ensemble_probs` (the combination in numpy)
    score.py    the members scored over the face-crop cache (`member_item_probs`, `member_video_probs`)
    store.py    the config JSON (`save_ensemble_config`, `read_ensemble_config`), the members'
                checkpoints (`find_member_checkpoints`, `load_member`) and `load_ensemble`

Fitting an ensemble, as the evaluation notebook does (`pipeline/evaluate.py`):

    ckpts = find_member_checkpoints(RunPaths.of(params), models)    # best of each model's last stage
    ens = Ensemble({n: load_member(p) for n, p in ckpts.items()})
    val = member_video_probs(ens, val_rows, crop_cache(params))      # video_id, label, one column per member
    fit = fit_ensemble(val[ens.names], val["label"], groups=val["dataset"])  # weights, vote tau, temperature, threshold
    save_ensemble_config(params.output_dir, ckpts, fit["weights"], fit["threshold"], fit["temperature"],
                         metadata={"profile": params.profile, "val": fit["val"]}, preprocess=params.preprocess,
                         combination=fit["combination"], audio=fit["audio"], vote_tau=fit["vote_tau"])
    ens = load_ensemble(params.output_dir)                           # what `predict` runs
"""
