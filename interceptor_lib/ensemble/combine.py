"""The ensemble module: one P(fake) from the specialists' P(fake), their spread, a shared trunk.

    members = {name: model for name, model in ...}           # DetectorBase instances (image or clip)
    ens = Ensemble(members, weights={"ll": 0.3, ...})
    out = ens({"image": frames, "clip": clips, "audio": a, "has_audio": h})
    out["prob"] (B,), out["member_probs"] (B, M), out["uncertainty"] (B,), out["logits"] (B, 2)

Shared trunk. Every specialist runs the same frozen ImageNet stem and leading stages (see
`models/base.py`); only the last stages, the specialist module and the head differ. Members whose
`trunk_state()` (weights and BatchNorm statistics), trunk depth and input kind are equal form a
group; the group computes `forward_trunk` once and every member continues from it
(`member(batch, trunk=t)`). Groups of both kinds with the same trunk reuse one computation when the
frames are the same tensor content (an image batch that is the clips' frames, as in the benchmark).
Grouping is decided from the weights themselves (a sha256), never from names, so members trained
apart with a drifted trunk are simply not grouped, and results equal running the members one by
one (tested to 1e-5).

Combination (see COMBINATIONS). "logit": the members vote in log-odds, P(fake) = sigmoid(sum_j w_j
logit(p_j) / T), or, with a vote temperature tau, sigmoid(tau log sum_j w_j exp(logit(p_j) / tau) / T):
a soft OR of the specialists (`soft_or_vote`); "prob": the weighted mean of the probabilities,
optionally temperature-scaled. An
ensemble may hold a second weight set and temperature for inputs with an audio track
(`audio_weights`, `audio_temperature`; why and how they are fitted: `ensemble/fit.py`); it reads
`has_audio` from the batch and combines each input with the set of its kind.
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np
import torch
from torch import nn

from interceptor_lib.errors import InterceptorError
from interceptor_lib.metrics.scores import EPS
from interceptor_lib.models.base import BatchError, DetectorBase, two_class_logits

#: how member P(fake) are combined: "prob", the weighted mean of the probabilities; "logit", the weighted
#: mean of their log-odds (weighted voting in log-odds: a confident member is not averaged away)
COMBINATIONS = ("prob", "logit")
#: in log-odds voting each member's P(fake) is clipped to [VOTE_EPS, 1 - VOTE_EPS] (a vote of at most
#: +-6.9): no member can veto the others, and the log-odds stay well-conditioned for float32 exports
VOTE_EPS = 1e-3


def soft_or_vote(votes: torch.Tensor, w: torch.Tensor, vote_tau: float | None) -> torch.Tensor:
    """The members' log-odds votes (B, M) combined with weights w (M,, summing to 1): the weighted
    mean sum_j w_j v_j without `vote_tau`, else the weighted log-sum-exp tau log sum_j w_j exp(v_j / tau).

    Each specialist sees one family of artifacts and is blind to the others, so a fake is usually
    shown by one member while the rest vote "real"; the mean averages that one vote away. The
    log-sum-exp is a soft OR: it lies between the weighted mean (tau -> infinity) and the largest vote
    (tau -> 0), never below the mean (Jensen), so a confident member is heard while the weights still
    say how much each member's vote counts (a member of weight w pays tau log w)."""
    if vote_tau is None:
        return votes @ w
    tau = float(vote_tau)
    return tau * torch.logsumexp(votes / tau + torch.log(w.clamp_min(1e-12)), dim=1)


class EnsembleError(InterceptorError, ValueError):
    """An ensemble cannot be built or loaded (no config file, a missing checkpoint, bad weights)."""


# ----------------------------------------------------------------------------------------- trunk

def trunk_hash(model: DetectorBase) -> str:
    """sha256 of the model's frozen trunk (`state_hash` of its trunk_state). Equal hashes (with equal
    depth and input kind) mean the trunk computes the same function."""
    return state_hash(model.trunk_state())


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict: sorted names, dtypes, shapes and tensor bytes (the weights themselves,
    whatever file or format they were stored in)."""
    h = hashlib.sha256()
    for name, t in sorted(state.items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
    return h.hexdigest()


def _same_frames(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when two frame batches hold the same values (a view of the same memory is checked first)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True
    return bool(torch.equal(a, b))


# ----------------------------------------------------------------------------------------- module

class Ensemble(nn.Module):
    """Weighted mean of the members' P(fake), with their weighted spread as uncertainty.

    `members`: name -> DetectorBase (image and clip models can be mixed: each reads its own batch key).
    `weights`: name -> weight >= 0 (normalised to sum 1; default equal). `share_trunk`: run each
    trunk group's frozen trunk once (see the module docstring). `temperature` (T > 0, optional)
    rescales the ensemble's fake logit: prob = sigmoid(logit(weighted mean) / T); `threshold` is the
    decision threshold on that prob (both fitted on validation, set by `load_ensemble`). `vote_tau`
    (combination "logit" only; None = the weighted mean of the log-odds): the temperature of the soft
    OR of the members' votes (`soft_or_vote`).
    `audio_weights` / `audio_temperature` (optional): the weight set and temperature for inputs with
    audio (see the module docstring); without `audio_weights` every input uses `weights`.

    Items: every member's prob is averaged per item before combining. By default an item is a row of
    the member's input; when a batch holds `image` (N, 3, H, W) and `clip` (B, T, 3, H, W) with
    N = B * T, the image rows are taken to be the clips' frames and averaged per clip. An explicit
    `image_item` / `clip_item` (long, one item number per row) groups rows into items, e.g. all
    frames and clips of one video into item 0 (frame-to-video aggregation by the mean).

    The grouping is computed from the weights when the ensemble is built; call `regroup()` after
    changing a member's trunk weights in place (`load_state_dict` on the ensemble does it).
    """

    def __init__(self, members: dict[str, DetectorBase], weights: dict[str, float] | None = None,
                 share_trunk: bool = True, temperature: float | None = None, threshold: float | None = None,
                 combination: str = "prob", audio_weights: dict[str, float] | None = None,
                 audio_temperature: float | None = None, vote_tau: float | None = None):
        super().__init__()
        if combination not in COMBINATIONS:
            raise EnsembleError(f"unknown combination {combination!r}; expected one of {COMBINATIONS}")
        check_vote_tau(vote_tau, combination)
        self.combination = combination
        self.vote_tau = None if vote_tau is None else float(vote_tau)
        if not members:
            raise EnsembleError("an ensemble needs at least one member")
        bad = [n for n, m in members.items() if not isinstance(m, DetectorBase)]
        if bad:
            raise EnsembleError(f"ensemble members must be DetectorBase models (create_model); not: {bad}")
        self.members = nn.ModuleDict(members)
        self.share_trunk = share_trunk
        self.temperature = temperature
        self.threshold = threshold
        norms = {(tuple(m.data_config["mean"]), tuple(m.data_config["std"])) for m in members.values()}
        if len(norms) > 1:
            raise EnsembleError(f"ensemble members normalise their input differently ({sorted(norms)}); one batch "
                                "cannot serve them all")
        self.set_weights(weights, audio_weights)
        self.audio_temperature = audio_temperature
        self.regroup()

    # -------------------------------------------------------------- configuration
    @property
    def names(self) -> list[str]:
        return list(self.members.keys())

    @property
    def data_config(self) -> dict:
        """mean / std / input_size of the members' backbone (equal for all members, checked)."""
        return next(iter(self.members.values())).data_config

    def set_weights(self, weights: dict[str, float] | None, audio_weights: dict[str, float] | None = None) -> None:
        """Set the member weights (normalised to sum 1; None = equal) and those for inputs with audio
        (None: the same as for the others)."""
        self.weights = normalise_weights(weights, self.names)
        self.audio_weights = None if audio_weights is None else normalise_weights(audio_weights, self.names)

    def regroup(self) -> list[dict]:
        """Recompute the trunk groups from the members' current weights. Returns `trunk_groups()`."""
        groups: dict[tuple, list[str]] = {}
        for name, m in self.members.items():
            depth = m.backbone.trunk_depth
            if not self.share_trunk or depth == 0:  # depth 0: no frozen trunk to share
                key = ("alone", name, m.input_kind, depth)
            else:
                key = (trunk_hash(m), m.input_kind, depth)
            groups.setdefault(key, []).append(name)
        self._groups = [(k, v) for k, v in groups.items()]
        return self.trunk_groups()

    def trunk_groups(self) -> list[dict]:
        """The grouping: one dict per group with members, input_kind, trunk_depth, trunk_hash
        (first 12 hex digits; None for members that run alone) and shared (more than one member)."""
        out = []
        for key, names in self._groups:
            alone = key[0] == "alone"
            m = self.members[names[0]]
            out.append({"members": list(names), "input_kind": m.input_kind, "trunk_depth": m.backbone.trunk_depth,
                        "trunk_hash": None if alone else key[0][:12], "shared": not alone and len(names) > 1})
        return out

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.regroup()
        return result

    # -------------------------------------------------------------- forward
    def run_members(self, batch: dict, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Per-row P(fake) of each member in `names` (default all): (N,) for image members (one per
        image row), (B,) for clip members (one per clip). Trunks are shared within groups."""
        wanted = self.names if names is None else list(names)
        unknown = [n for n in wanted if n not in self.members]
        if unknown:
            raise EnsembleError(f"no ensemble member(s) {unknown}; members are {self.names}")
        probs: dict[str, torch.Tensor] = {}
        computed: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # (hash, depth) -> [(frames, trunk)]
        for key, group in self._groups:
            group = [n for n in group if n in wanted]
            if not group:
                continue
            if key[0] == "alone":
                for n in group:
                    probs[n] = self.members[n](batch)["prob"]
                continue
            first = self.members[group[0]]
            frames = first.frames(batch)  # checks the batch key and shape
            trunk = None
            for seen, t in computed.get((key[0], key[2]), []):
                if _same_frames(seen, frames):  # e.g. image members on the clips' own frames
                    trunk = t
                    break
            if trunk is None:
                trunk = first.forward_trunk(batch)
                computed.setdefault((key[0], key[2]), []).append((frames, trunk))
            for n in group:
                probs[n] = self.members[n](batch, trunk=trunk)["prob"]
        return {n: probs[n] for n in wanted}

    def forward(self, batch: dict) -> dict:
        """prob (B,), member_probs (B, M) in member order, uncertainty (B,), logits (B, 2) and
        prob_uncalibrated (B,) (equal to prob without a temperature)."""
        raw = self.run_members(batch)
        items = {n: self._item_probs(batch, self.members[n].input_kind, p) for n, p in raw.items()}
        sizes = {n: p.shape[0] for n, p in items.items()}  # no len()/set(): torch.export traces symbolic sizes
        if any(s != sizes[self.names[0]] for s in sizes.values()):
            raise BatchError(f"ensemble members scored different numbers of items {sizes}; give the batch "
                             "'image_item' / 'clip_item' (the item of each row) so that they can be aligned")
        member_probs = torch.stack([items[n] for n in self.names], dim=1)  # (B, M)
        has_audio = None
        if self.audio_weights is not None and "has_audio" in batch and "clip" in batch:
            has = batch["has_audio"].to(member_probs.device).reshape(-1).to(member_probs.dtype)
            has_audio = self._item_probs(batch, "clip", has) > 0.5  # (B,): the item's clips mostly have audio
        return self.combine(member_probs, has_audio=has_audio)

    def weights_for(self, names: list[str] | None = None, audio: bool = False) -> dict[str, float]:
        """The weights that combine `names` (default all members) for an input with or without audio,
        renormalised over those members."""
        names = self.names if names is None else list(names)
        src = self.audio_weights if audio and self.audio_weights is not None else self.weights
        total = sum(src[n] for n in names)
        if total <= 0:
            raise EnsembleError(f"members {names} all have weight 0{' for inputs with audio' if audio else ''}; "
                                "no ensemble score can be formed")
        return {n: src[n] / total for n in names}

    def combine(self, member_probs: torch.Tensor, names: list[str] | None = None,
                has_audio: torch.Tensor | None = None) -> dict:
        """Combine (B, M') member probabilities of `names` (default all members, in order) with the
        ensemble's weights renormalised over those members; rows where `has_audio` (B,) is True use the
        weight set and temperature for inputs with audio when the ensemble has one. See `forward`
        for the keys."""
        names = self.names if names is None else list(names)
        out = self._combine(member_probs, names, audio=False)
        if self.audio_weights is None or has_audio is None:
            return out
        with_audio = self._combine(member_probs, names, audio=True)
        has = torch.as_tensor(has_audio, device=member_probs.device).reshape(-1).bool()
        for k in ("prob", "prob_uncalibrated", "uncertainty"):
            out[k] = torch.where(has, with_audio[k], out[k])
        out["logits"] = torch.where(has[:, None], with_audio["logits"], out["logits"])
        return out

    def _combine(self, member_probs: torch.Tensor, names: list[str], audio: bool) -> dict:
        weights = self.weights_for(names, audio)  # on the Python weights: no data-dependent branch
        w = torch.tensor([weights[n] for n in names], dtype=member_probs.dtype, device=member_probs.device)
        temperature = self.audio_temperature if audio else self.temperature
        mean = member_probs @ w
        spread = ((member_probs - mean[:, None]) ** 2) @ w
        uncertainty = spread.clamp_min(0).sqrt()
        if self.combination == "logit":
            pm = member_probs.clamp(VOTE_EPS, 1 - VOTE_EPS)
            z = soft_or_vote(torch.log(pm) - torch.log1p(-pm), w, self.vote_tau)
            raw = torch.sigmoid(z)
        else:
            p = mean.clamp(EPS, 1 - EPS)
            z = torch.log(p) - torch.log1p(-p)
            raw = mean
        if temperature is not None:
            z = z / float(temperature)
        prob = torch.sigmoid(z) if temperature is not None else raw
        return {"prob": prob, "prob_uncalibrated": raw, "member_probs": member_probs,
                "uncertainty": uncertainty, "logits": two_class_logits(z)}

    @staticmethod
    def _item_probs(batch: dict, kind: str, p: torch.Tensor) -> torch.Tensor:
        """Average a member's per-row probs per item (see the class docstring)."""
        index = batch.get(f"{kind}_item")
        if index is None and kind == "image" and "clip" in batch and batch["clip"].dim() == 5:
            b, t = batch["clip"].shape[:2]
            if p.shape[0] == b * t and p.shape[0] != b:
                return p.view(b, t).mean(1)
        if index is None:
            return p
        index = torch.as_tensor(index, device=p.device).long().reshape(-1)
        if len(index) != len(p):
            raise BatchError(f"batch[{kind + '_item'!r}] has {len(index)} entries for {len(p)} {kind} rows")
        n = int(index.max()) + 1
        sums = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, index, p)
        counts = torch.zeros(n, dtype=p.dtype, device=p.device).index_add_(0, index, torch.ones_like(p))
        if bool((counts == 0).any()):
            empty = torch.nonzero(counts == 0).flatten().tolist()
            raise BatchError(f"batch[{kind + '_item'!r}] leaves item(s) {empty} "
                             f"without a {kind} row")
        return sums / counts


def check_vote_tau(vote_tau, combination: str) -> None:
    """A vote temperature is a positive number, and only the "logit" combination has one."""
    if vote_tau is None:
        return
    if isinstance(vote_tau, bool) or not isinstance(vote_tau, numbers.Real) or not (np.isfinite(vote_tau) and vote_tau > 0):
        raise EnsembleError(f"vote_tau must be a positive number or None, got {vote_tau!r}")
    if combination != "logit":
        raise EnsembleError(f"vote_tau applies to the 'logit' combination (votes in log-odds), not {combination!r}")


def normalise_weights(weights: dict[str, float] | None, names: list[str]) -> dict[str, float]:
    """Weights for exactly `names`, >= 0 and summing to 1 (None: equal weights)."""
    if weights is None:
        return {n: 1.0 / len(names) for n in names}
    missing, extra = [n for n in names if n not in weights], [n for n in weights if n not in names]
    if missing or extra:
        raise EnsembleError(f"weights must name exactly the members {names}; missing {missing}, unknown {extra}")
    w = np.array([float(weights[n]) for n in names])
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise EnsembleError(f"weights must be finite, >= 0 and not all 0, got {dict(zip(names, w.tolist()))}")
    return {n: float(v) for n, v in zip(names, w / w.sum())}
