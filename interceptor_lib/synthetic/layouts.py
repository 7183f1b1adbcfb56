"""Plans of the four datasets in their official on-disk layouts (docs: DATASETS.md).

Each `plan_*` function returns a `DatasetPlan`: the jobs that render its media files, the side-table
rows (one per video or sequence; analysis only, loaders never read them) and the small metadata
files (split JSONs, the Celeb-DF test list, DFDC `metadata.json`). Nothing here renders pixels.

Conventions shared by all four:
- every name keys its own random stream (`named_rng(seed, ...)`), so adding a video never changes
  another one;
- a fake is its original's `ClipSpec` plus one artifact (and, for face swaps, the source's inner
  features); the artifact strength is drawn around the corpus-wide `artifact_strength`;
- families are assigned from a shuffled, balanced cycle so that every family appears even at the
  tiny scale.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from interceptor_lib.synthetic.artifacts import FAMILIES, VISUAL_FAMILIES, ArtifactSpec, draw_artifact
from interceptor_lib.synthetic.clip import ClipSpec
from interceptor_lib.synthetic.jobs import SequenceJob, VideoJob
from interceptor_lib.synthetic.scales import ScaleSpec
from interceptor_lib.synthetic.scene import (SceneSpec, draw_identity, draw_scene, named_rng,
                                             scene_conditions, swap_inner)

DEMO_ROOTS = {"ffpp": "FaceForensics++", "celebdf": "Celeb-DF-v2", "wilddeepfake": "deepfake_in_the_wild",
              "dfdc": "dfdc"}

#: FaceForensics++ methods, their dominant artifact family, and whether they swap identities
#: (Deepfakes, FaceSwap, FaceShifter) or re-enact the target's expressions (Face2Face, NeuralTextures).
FFPP_METHODS = {"Deepfakes": ("resolution", True), "Face2Face": ("temporal", False),
                "FaceSwap": ("lighting", True), "NeuralTextures": ("compression", False),
                "FaceShifter": ("low_light", True)}
FFPP_DOMINANT_SHARE = 0.75  # the rest of a method's fakes carry another visual family

_GEOMETRY = {"ffpp": (256, 192, 25.0), "celebdf": (320, 180, 30.0), "dfdc": (320, 180, 30.0),
             "wilddeepfake": (224, 224, 25.0)}


@dataclass
class DatasetPlan:
    jobs: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    files: dict = field(default_factory=dict)  # relpath -> text content


# -- helpers ---------------------------------------------------------------------------------------

def _balanced(rng: np.random.Generator, families, n: int) -> list[str]:
    """n families: whole shuffled rounds of `families`, so each appears n // len(families) times
    or once more."""
    out: list[str] = []
    while len(out) < n:
        out.extend(rng.permutation(list(families)).tolist())
    return out[:n]


def _artifact(seed: int, key: str, family: str, strength: float, original: ClipSpec) -> ArtifactSpec:
    rng = named_rng(seed, "artifact", key)
    return draw_artifact(rng, family, strength * rng.uniform(0.7, 1.3), dark=original.scene.dark)


def _row(dataset, relpath, label, method, clip: ClipSpec, original="", has_audio=False, **extra) -> dict:
    art = clip.artifact
    width, height = clip.out_size or (clip.width, clip.height)  # of the saved file
    row = {"dataset": dataset, "relpath": relpath, "label": int(label), "method": method,
           "artifact": art.family if art is not None else "none",
           "strength": art.strength if art is not None else 0.0,
           "artifact_params": art.describe() if art is not None else "",
           "original": original, "has_audio": bool(has_audio), "frames": clip.n_frames, "fps": clip.fps,
           "width": width, "height": height,
           "crf": "" if clip.source_jpeg else clip.scene.quality,
           "jpeg_quality": clip.scene.quality if clip.source_jpeg else ""}
    row.update(scene_conditions(clip.scene))
    row.update(extra)
    return row


def _original_clip(seed: int, key: str, identity, dataset: str, n_frames: int,
                   size: tuple[int, int] | None = None) -> ClipSpec:
    w, h, fps = _GEOMETRY[dataset]
    if size is not None:
        w, h = size
    scene = draw_scene(named_rng(seed, "scene", key), identity)
    return ClipSpec(scene=scene, face=identity, width=w, height=h, fps=fps, n_frames=n_frames)


def _fake_of(original: ClipSpec, key: str, artifact: ArtifactSpec, face=None,
             mouth_from: SceneSpec | None = None) -> ClipSpec:
    return dataclasses.replace(original, artifact=artifact, artifact_key=key,
                               face=face if face is not None else original.face,
                               mouth_scene_seed=mouth_from.seed if mouth_from is not None else None)


# -- FaceForensics++ -------------------------------------------------------------------------------

def plan_ffpp(seed: int, scale: ScaleSpec, strength: float) -> DatasetPlan:
    """original_sequences/youtube/c23/videos/NNN.mp4, manipulated_sequences/<Method>/c23/videos/
    <t>_<s>.mp4 for both orders of every pair, splits/{train,val,test}.json."""
    root, plan = DEMO_ROOTS["ffpp"], DatasetPlan()
    rng = named_rng(seed, "ffpp", "plan")
    ids = [f"{i:03d}" for i in rng.choice(1000, 2 * scale.ffpp_pairs, replace=False)]
    pairs = [sorted(ids[2 * k:2 * k + 2]) for k in range(scale.ffpp_pairs)]
    nv = scale.ffpp_val_pairs
    splits = {"val": pairs[:nv], "test": pairs[nv:2 * nv], "train": pairs[2 * nv:]}
    split_of = {i: name for name, ps in splits.items() for p in ps for i in p}
    for name, ps in splits.items():
        plan.files[f"{root}/splits/{name}.json"] = json.dumps(ps)
    idents = {i: draw_identity(named_rng(seed, "ffpp", "identity", i)) for i in ids}
    originals = {i: _original_clip(seed, f"ffpp/{i}", idents[i], "ffpp", scale.frames) for i in ids}
    for i in ids:
        rel = f"{root}/original_sequences/youtube/c23/videos/{i}.mp4"
        plan.jobs.append(VideoJob(rel, originals[i]))
        plan.rows.append(_row("ffpp", rel, 0, "real", originals[i], split=split_of[i]))
    fam_rng = named_rng(seed, "ffpp", "families")
    for method, (dominant, swap) in FFPP_METHODS.items():
        others = [f for f in VISUAL_FAMILIES if f != dominant]
        for a, b in pairs:
            for t, s in ((a, b), (b, a)):
                family = dominant if fam_rng.uniform() < FFPP_DOMINANT_SHARE else str(fam_rng.choice(others))
                key = f"ffpp/{method}/{t}_{s}"
                face = swap_inner(idents[t], idents[s]) if swap else None
                clip = _fake_of(originals[t], key, _artifact(seed, key, family, strength, originals[t]), face=face,
                                mouth_from=None if swap else originals[s].scene)
                rel = f"{root}/manipulated_sequences/{method}/c23/videos/{t}_{s}.mp4"
                plan.jobs.append(VideoJob(rel, clip))
                plan.rows.append(_row("ffpp", rel, 1, method, clip, original=f"{t}.mp4", split=split_of[t]))
    return plan


# -- Celeb-DF v2 -----------------------------------------------------------------------------------

def plan_celebdf(seed: int, scale: ScaleSpec, strength: float) -> DatasetPlan:
    """Celeb-real/id<X>_<NNNN>.mp4, YouTube-real/<NNNNN>.mp4, Celeb-synthesis/id<A>_id<B>_<NNNN>.mp4
    and List_of_testing_videos.txt ('1' = real, '0' = fake, as in the real dataset), chosen by
    target identity so that a fake and its original are never split."""
    root, plan = DEMO_ROOTS["celebdf"], DatasetPlan()
    rng = named_rng(seed, "celebdf", "plan")
    if scale.celebdf_fakes_per_video >= scale.celebdf_identities:
        raise ValueError("Celeb-DF needs more identities than fakes per video (one fake per source identity)")
    ids = sorted(int(x) for x in rng.choice(62, scale.celebdf_identities, replace=False))
    idents = {x: draw_identity(named_rng(seed, "celebdf", "identity", str(x))) for x in ids}
    test_ids = set(rng.permutation(ids)[:scale.celebdf_test_ids].tolist())
    test_lines = []
    families = _balanced(named_rng(seed, "celebdf", "families"), VISUAL_FAMILIES,
                         len(ids) * scale.celebdf_videos_per_id * scale.celebdf_fakes_per_video)
    for x in ids:
        for v in range(scale.celebdf_videos_per_id):
            name = f"id{x}_{v:04d}"
            orig = _original_clip(seed, f"celebdf/{name}", idents[x], "celebdf", scale.frames)
            rel = f"Celeb-real/{name}.mp4"
            plan.jobs.append(VideoJob(f"{root}/{rel}", orig))
            plan.rows.append(_row("celebdf", f"{root}/{rel}", 0, "real", orig, in_test_list=x in test_ids))
            if x in test_ids:
                test_lines.append(f"1 {rel}")
            sources = named_rng(seed, "celebdf", "sources", name).choice(
                [y for y in ids if y != x], scale.celebdf_fakes_per_video, replace=False)
            for y in sorted(int(s) for s in sources):
                fname = f"id{x}_id{y}_{v:04d}"
                key = f"celebdf/{fname}"
                clip = _fake_of(orig, key, _artifact(seed, key, families.pop(), strength, orig),
                                face=swap_inner(idents[x], idents[y]))
                frel = f"Celeb-synthesis/{fname}.mp4"
                plan.jobs.append(VideoJob(f"{root}/{frel}", clip))
                plan.rows.append(_row("celebdf", f"{root}/{frel}", 1, "Celeb-synthesis", clip,
                                      original=f"Celeb-real/{name}.mp4", in_test_list=x in test_ids))
                if x in test_ids:
                    test_lines.append(f"0 {frel}")
    yt = sorted(int(n) for n in rng.choice(300, scale.celebdf_youtube, replace=False))
    yt_test = set(rng.permutation(yt)[:scale.celebdf_test_youtube].tolist())
    for n in yt:
        name = f"{n:05d}"
        ident = draw_identity(named_rng(seed, "celebdf", "youtube-identity", name))
        clip = _original_clip(seed, f"celebdf/youtube/{name}", ident, "celebdf", scale.frames)
        rel = f"YouTube-real/{name}.mp4"
        plan.jobs.append(VideoJob(f"{root}/{rel}", clip))
        plan.rows.append(_row("celebdf", f"{root}/{rel}", 0, "real", clip, in_test_list=n in yt_test))
        if n in yt_test:
            test_lines.append(f"1 {rel}")
    order = named_rng(seed, "celebdf", "test-order").permutation(len(test_lines))
    plan.files[f"{root}/List_of_testing_videos.txt"] = "\n".join(test_lines[i] for i in order) + "\n"
    return plan


# -- WildDeepfake ----------------------------------------------------------------------------------

def plan_wilddeepfake(seed: int, scale: ScaleSpec, strength: float) -> DatasetPlan:
    """{real,fake}_{train,test}/<N>.tar.gz with ./<N>/<real|fake>/<seq>/<frame>.png face crops.
    The sequences of one tar come from one source video: they share its one or two people.
    The crops are saved at 224 x 224, but the faces were smaller in their source videos: each
    sequence is rendered (noise, artifact, JPEG) at 112-157 px and upscaled, so that after the cache
    resizes it to the face size its detail sits at the scale of the other datasets' detected crops."""
    root, plan = DEMO_ROOTS["wilddeepfake"], DatasetPlan()
    n_fake = sum(t * s for folder, t, s in scale.wdf_tars if folder.startswith("fake"))
    families = _balanced(named_rng(seed, "wdf", "families"), VISUAL_FAMILIES, n_fake)
    w, h, fps = _GEOMETRY["wilddeepfake"]
    for folder, n_tars, per_tar in scale.wdf_tars:
        kind = folder.split("_")[0]
        for number in range(1, n_tars + 1):
            rel = f"{root}/{folder}/{number}.tar.gz"
            rng = named_rng(seed, "wdf", folder, str(number))
            people = [draw_identity(named_rng(seed, "wdf", "identity", folder, str(number), str(p)))
                      for p in range(int(rng.integers(1, 3)))]
            seqs, seq_id = [], int(rng.integers(0, 5))
            for _ in range(per_tar):
                key = f"wdf/{folder}/{number}/{seq_id}"
                ident = people[int(rng.integers(len(people)))]
                scene = draw_scene(named_rng(seed, "scene", key), ident, crop=True)
                n_frames = int(rng.integers(scale.wdf_frames[0], scale.wdf_frames[1] + 1))
                side = int(round(w * named_rng(seed, "wdf", "source-size", key).uniform(0.5, 0.7)))
                clip = ClipSpec(scene, ident, side, side, fps, n_frames, source_jpeg=True, out_size=(w, h))
                if kind == "fake":
                    clip = _fake_of(clip, key, _artifact(seed, key, families.pop(), strength, clip))
                first = int(rng.integers(0, 40))
                seqs.append((str(seq_id), first, clip))
                plan.rows.append(_row("wilddeepfake", f"{rel}::{number}/{kind}/{seq_id}", int(kind == "fake"),
                                      "real" if kind == "real" else "WildDeepfake", clip,
                                      split=folder.split("_")[1], source_px=side))
                seq_id += int(rng.integers(1, 4))
            plan.jobs.append(SequenceJob(rel, number, kind, tuple(seqs)))
    return plan


# -- DFDC ------------------------------------------------------------------------------------------

def plan_dfdc(seed: int, scale: ScaleSpec, strength: float) -> DatasetPlan:
    """dfdc_train_part_<k>/<10 letters>.mp4 (H.264 + AAC) and metadata.json per part; parts differ
    in class balance and some fakes' originals sit in another part."""
    root, plan = DEMO_ROOTS["dfdc"], DatasetPlan()
    rng = named_rng(seed, "dfdc", "plan")
    n_total = sum(r + f for r, f in scale.dfdc_parts)
    names = _unique_names(rng, n_total)
    reals_by_part, clips = [], {}
    for k, (n_real, _) in enumerate(scale.dfdc_parts):
        part = []
        for _ in range(n_real):
            name = names.pop()
            ident = draw_identity(named_rng(seed, "dfdc", "identity", name))
            portrait = named_rng(seed, "dfdc", "orientation", name).uniform() < 0.2
            w, h = _GEOMETRY["dfdc"][:2]
            clips[name] = _original_clip(seed, f"dfdc/{name}", ident, "dfdc", scale.frames,
                                         size=(h, w) if portrait else (w, h))
            part.append(name)
        reals_by_part.append(part)
    all_reals = [n for part in reals_by_part for n in part]
    families = _balanced(named_rng(seed, "dfdc", "families"), FAMILIES, sum(f for _, f in scale.dfdc_parts))
    for k, (_, n_fake) in enumerate(scale.dfdc_parts):
        meta = {}
        for name in reals_by_part[k]:
            rel = f"{root}/dfdc_train_part_{k}/{name}.mp4"
            plan.jobs.append(VideoJob(rel, clips[name], audio=True))
            plan.rows.append(_row("dfdc", rel, 0, "real", clips[name], has_audio=True, chunk=k))
            meta[f"{name}.mp4"] = {"label": "REAL", "split": "train", "original": None}
        for j in range(n_fake):
            cross = rng.uniform() < scale.dfdc_cross_chunk or (k == 0 and j == 0)  # at least one
            other_parts = [p for p in range(len(reals_by_part)) if p != k and reals_by_part[p]]
            if cross and other_parts:
                src_part = int(rng.choice(other_parts))
            else:
                src_part = k
            orig = reals_by_part[src_part][j % len(reals_by_part[src_part])]
            source = str(rng.choice([n for n in all_reals if n != orig]))
            name = names.pop()
            key = f"dfdc/{name}"
            _plan_dfdc_fake(plan, f"{root}/dfdc_train_part_{k}/{name}.mp4", key, families.pop(), seed, strength,
                            clips[orig], clips[source], chunk=k, original=f"dfdc_train_part_{src_part}/{orig}.mp4")
            meta[f"{name}.mp4"] = {"label": "FAKE", "split": "train", "original": f"{orig}.mp4"}
        plan.files[f"{root}/dfdc_train_part_{k}/metadata.json"] = json.dumps(dict(sorted(meta.items())))
    _plan_dfdc_test(plan, seed, scale, strength, taken={Path(r["relpath"]).stem for r in plan.rows})
    return plan


def _plan_dfdc_fake(plan: DatasetPlan, rel: str, key: str, family: str, seed: int, strength: float,
                    target: ClipSpec, source: ClipSpec, **row) -> None:
    """One DFDC face swap (source's inner face on the `target` real clip, with audio): its job and its
    row (`row`: the extra columns of `_row`)."""
    clip = _fake_of(target, key, _artifact(seed, key, family, strength, target),
                    face=swap_inner(target.face, source.face))
    plan.jobs.append(VideoJob(rel, clip, audio=True))
    plan.rows.append(_row("dfdc", rel, 1, "DFDC", clip, has_audio=True, **row))


def _plan_dfdc_test(plan: DatasetPlan, seed: int, scale: ScaleSpec, strength: float, taken: set[str]) -> None:
    """The public test set: test/videos/<name>.mp4 and test/labels.csv (filename,label; 1 = fake),
    with its own people (no identity is shared with the training parts), so the indexer takes it as
    DFDC's test split instead of holding out groups of the parts."""
    n_real, n_fake = scale.dfdc_test
    if not n_real + n_fake:
        return
    root, rng = DEMO_ROOTS["dfdc"], named_rng(seed, "dfdc", "test")
    names = [n for n in _unique_names(rng, n_real + n_fake + len(taken)) if n not in taken][: n_real + n_fake][::-1]
    reals, clips = [], {}
    for _ in range(n_real):
        name = names.pop()
        ident = draw_identity(named_rng(seed, "dfdc", "identity", name))
        clips[name] = _original_clip(seed, f"dfdc/test/{name}", ident, "dfdc", scale.frames)
        reals.append(name)
    families = _balanced(named_rng(seed, "dfdc", "test_families"), FAMILIES, n_fake)
    labels = []
    for name in reals:
        rel = f"{root}/test/videos/{name}.mp4"
        plan.jobs.append(VideoJob(rel, clips[name], audio=True))
        plan.rows.append(_row("dfdc", rel, 0, "real", clips[name], has_audio=True, chunk=-1, split="test"))
        labels.append((f"{name}.mp4", 0))
    for j in range(n_fake):
        orig = reals[j % len(reals)] if reals else None
        if orig is None:
            raise ValueError("a DFDC demo test set with fakes needs at least one real video")
        source = str(rng.choice([n for n in reals if n != orig] or [orig]))
        name = names.pop()
        key = f"dfdc/test/{name}"
        _plan_dfdc_fake(plan, f"{root}/test/videos/{name}.mp4", key, families.pop(), seed, strength,
                        clips[orig], clips[source], chunk=-1, split="test", original=f"test/videos/{orig}.mp4")
        labels.append((f"{name}.mp4", 1))
    plan.files[f"{root}/test/labels.csv"] = "filename,label\n" + "".join(f"{f},{y}\n" for f, y in sorted(labels))


def _unique_names(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct 10-letter lowercase names, like DFDC's file names."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    names: list[str] = []
    seen = set()
    while len(names) < n:
        name = "".join(rng.choice(letters, 10))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names[::-1]  # popped from the end: first drawn, first used


PLANNERS = {"ffpp": plan_ffpp, "celebdf": plan_celebdf, "wilddeepfake": plan_wilddeepfake, "dfdc": plan_dfdc}
