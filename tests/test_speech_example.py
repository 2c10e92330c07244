"""``configs/pipeline/speech_example.yaml`` end to end on tiny generated "speech": two synthetic voices per
gender (f0 and formants of a low and a high voice) speaking two synthetic "languages" (different vowel
sequences and syllable rates), laid out as a user's own EVAR root. Only the root (``$EVAR``), the clip length
and the sizes (replicates, seeds, epochs, draws) are overridden; the tasks, models and stages are the
shipped config's."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.app.config import load_config
from analysis.app.pipeline import Pipeline
from analysis.runs.read import read_features, read_stats
from conftest import REPO_ROOT, write_wav

CONFIG = REPO_ROOT / "configs" / "pipeline" / "speech_example.yaml"
SR = 16000
#: gender -> (f0 of its two speakers, formant scale)
VOICES = {"female": ((210.0, 240.0), 1.18), "male": ((105.0, 125.0), 1.0)}
#: language -> (vowel sequence as formant pairs, syllables per second)
LANGUAGES = {"lang_a": (((730, 1090), (270, 2290)), 3.0), "lang_b": (((300, 870), (570, 840), (440, 1020)), 5.0)}


def utterance(f0: float, scale: float, vowels, rate: float, seconds: float, seed: int) -> np.ndarray:
    """A buzz at ``f0`` (4 % jitter) through formant bumps that step through ``vowels`` at ``rate`` syllables
    per second, with a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * seconds)) / SR
    f = f0 * (1 + 0.04 * np.sin(2 * np.pi * 3.1 * t + rng.uniform(0, 6)))
    phase = 2 * np.pi * np.cumsum(f) / SR
    syll = (t * rate).astype(int) % len(vowels)
    x = np.zeros_like(t)
    for k in range(1, int(6000 // f0)):
        w = np.zeros_like(t)
        for v, (f1, f2) in enumerate(vowels):
            on = syll == v
            w[on] = (
                np.exp(-(((k * f[on] - f1 * scale) / 120.0) ** 2))
                + 0.6 * np.exp(-(((k * f[on] - f2 * scale) / 180.0) ** 2))
                + 0.01
            )
        x += w * np.sin(k * phase) / math.sqrt(k)
    x *= 0.2 + 0.8 * np.sin(np.pi * (t * rate % 1.0)) ** 2
    return (0.4 * x / np.abs(x).max() + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def speech_root(root, seconds: float = 1.0):
    """16 clips: per (gender, language) one clip of each speaker in train, then one each in valid and test."""
    rows = []
    i = 0
    for gender, (f0s, scale) in VOICES.items():
        for language, (vowels, rate) in LANGUAGES.items():
            for split, f0 in zip(("train", "train", "valid", "test"), (f0s[0], f0s[1], f0s[0], f0s[1])):
                name = f"{gender}/{language}_{i:02d}.wav"
                write_wav(root / "work" / "16k" / "speech" / name, utterance(f0, scale, vowels, rate, seconds, i))
                rows.append({"file_name": name, "gender": gender, "language": language, "split": split})
                i += 1
    df = pd.DataFrame(rows)
    meta = root / "evar" / "metadata"
    meta.mkdir(parents=True)
    for task, col in (("speech_gender", "gender"), ("speech_language", "language")):
        df.rename(columns={col: "label"})[["file_name", "label", "split"]].to_csv(meta / f"{task}.csv", index=False)
    return df


@pytest.mark.slow
def test_speech_example_end_to_end(tmp_path, monkeypatch):
    df = speech_root(tmp_path / "speech")
    monkeypatch.setenv("EVAR", str(tmp_path / "speech"))
    cfg = load_config(CONFIG, out=str(tmp_path / "out"))
    assert list(cfg["tasks"]) == ["speech_gender", "speech_language"]
    assert list(cfg["models"]) == ["resemblyzer", "silero_vad"]
    assert all("init_args" not in m or not m["init_args"] for m in cfg["models"].values())  # pretrained defaults
    for opts in cfg["tasks"].values():
        opts["task_def"]["unit_sec"] = 1.0
    cfg["stability"].update(replicates=2, sweep=False)
    cfg["probe"].update(seeds=[42], max_epochs=3, patience=2, lr=1e-2)
    cfg["ablation"].update(random_draws=1, k_grid=[1])
    Pipeline(cfg).run()

    out = tmp_path / "out"
    counted = df[df["split"].isin(["train", "valid"])]
    for task, col in (("speech_gender", "gender"), ("speech_language", "language")):
        for model, n_sites in (("resemblyzer", 4), ("silero_vad", 5)):
            run = out / "runs" / f"{task}_{model}"
            assert (run / "classes.txt").read_text().split() == sorted(df[col].unique())
            st = read_stats(run)
            assert st["count"].shape[0] == n_sites
            assert st["n_clips"].tolist() == counted.groupby(col).size().sort_index().tolist()
            assert (out / "ablation" / f"{task}_{model}" / "ablation.csv").is_file()
    assert (out / "compare").is_dir() and (out / "report" / "summary.md").is_file()
    # the pretrained speaker encoder puts the two genders apart: same-gender clips are more alike
    feats = read_features(out / "runs" / "speech_gender_resemblyzer")
    emb = torch.nn.functional.normalize(feats.features.double(), dim=1)
    gender = feats.gts.long()
    sim = emb @ emb.T
    same = gender[:, None] == gender[None, :]
    off = ~torch.eye(len(gender), dtype=torch.bool)
    assert sim[same & off].mean() > sim[~same].mean()
